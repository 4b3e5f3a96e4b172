namespace FineTuning.Core.Data;

/// <summary>Turns rows of tokenized examples into a right-padded <see cref="CollatedBatch"/>.</summary>
internal static class BatchCollator
{
    /// <summary>
    /// Collates rows. A token is a training target when it is not the first of its example and, with
    /// <paramref name="lossOnCompletionOnly"/>, when it is marked trainable; the first token of an example is never
    /// predicted from the example packed before it.
    /// </summary>
    /// <param name="rows">The rows (one or more examples each).</param>
    /// <param name="lossOnCompletionOnly">Only trainable tokens are targets; otherwise every token but each example's first.</param>
    /// <returns>The batch.</returns>
    public static CollatedBatch Collate(IReadOnlyList<PackedRow> rows, bool lossOnCompletionOnly)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one row.", nameof(rows));
        }

        var length = rows.Max(r => r.Length);
        var size = rows.Count * length;
        var ids = new long[size];
        var mask = new long[size];
        var labels = new long[size];
        var positions = new long[size];
        var packed = rows.Any(r => r.Examples.Count > 1);
        var sequences = packed ? new long[size] : null;
        Array.Fill(labels, CollatedBatch.IgnoreIndex);
        for (var r = 0; r < rows.Count; r++)
        {
            var offset = r * length;
            var sequence = 0;
            foreach (var example in rows[r].Examples)
            {
                for (var i = 0; i < example.Length; i++, offset++)
                {
                    ids[offset] = example.InputIds[i];
                    mask[offset] = 1;
                    positions[offset] = i;
                    if (i > 0 && (!lossOnCompletionOnly || example.TrainableMask[i]))
                    {
                        labels[offset] = example.InputIds[i];
                    }

                    if (sequences is not null)
                    {
                        sequences[offset] = sequence;
                    }
                }

                sequence++;
            }

            // Padding forms one more sequence of its own, so it never joins the last example's attention.
            for (; sequences is not null && offset < (r + 1) * length; offset++)
            {
                sequences[offset] = sequence;
            }
        }

        return new CollatedBatch(rows.Count, length, ids, mask, labels, positions, sequences);
    }
}
