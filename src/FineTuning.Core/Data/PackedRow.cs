namespace FineTuning.Core.Data;

/// <summary>
/// One row of a training batch: a single example, or several short examples packed back to back (each keeps its
/// own positions from 0 and never attends to the others).
/// </summary>
/// <param name="Examples">The examples in the row, in order; at least one.</param>
internal sealed record PackedRow(IReadOnlyList<TokenizedExample> Examples)
{
    /// <summary>The number of tokens in the row.</summary>
    public int Length => Examples.Sum(e => e.Length);

    /// <summary>A row holding one example.</summary>
    public static PackedRow Single(TokenizedExample example) => new([example]);
}
