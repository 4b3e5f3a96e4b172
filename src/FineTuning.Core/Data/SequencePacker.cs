namespace FineTuning.Core.Data;

/// <summary>Packs short examples into rows of at most a given number of tokens.</summary>
internal static class SequencePacker
{
    /// <summary>
    /// Fills rows in data order (next fit): an example goes into the current row when it fits, otherwise it starts
    /// a new row. Examples are never split, so each one attends to all of its own tokens; an example longer than
    /// <paramref name="rowLength"/> must have been truncated before.
    /// </summary>
    /// <param name="examples">The examples, each at most <paramref name="rowLength"/> tokens.</param>
    /// <param name="rowLength">The maximum tokens per row.</param>
    /// <returns>The rows, in data order.</returns>
    public static IReadOnlyList<PackedRow> Pack(IReadOnlyList<TokenizedExample> examples, int rowLength)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(rowLength, 1);
        var rows = new List<PackedRow>();
        var current = new List<TokenizedExample>();
        var used = 0;
        foreach (var example in examples)
        {
            if (example.Length > rowLength)
            {
                throw new ArgumentException($"An example has {example.Length} tokens, more than the row length {rowLength}; truncate it first.", nameof(examples));
            }

            if (used + example.Length > rowLength && current.Count > 0)
            {
                rows.Add(new PackedRow(current));
                current = [];
                used = 0;
            }

            current.Add(example);
            used += example.Length;
        }

        if (current.Count > 0)
        {
            rows.Add(new PackedRow(current));
        }

        return rows;
    }
}
