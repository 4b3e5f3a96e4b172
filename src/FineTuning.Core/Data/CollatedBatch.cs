using FineTuning.Core.Models;
using static TorchSharp.torch;

namespace FineTuning.Core.Data;

/// <summary>
/// A right-padded batch on the CPU, row-major [rows, length]: token ids, padding mask, labels (the token id where
/// the position is a training target, -100 elsewhere, not yet shifted), positions and, for packed rows, sequence ids.
/// </summary>
internal sealed class CollatedBatch
{
    /// <summary>The label of a position that is not a training target (cross-entropy's ignore index).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>Creates a batch from flat arrays of <paramref name="rows"/> × <paramref name="length"/> values.</summary>
    public CollatedBatch(int rows, int length, long[] inputIds, long[] attentionMask, long[] labels, long[] positionIds, long[]? sequenceIds)
    {
        Rows = rows;
        Length = length;
        InputIds = inputIds;
        AttentionMask = attentionMask;
        Labels = labels;
        PositionIds = positionIds;
        SequenceIds = sequenceIds;
        TokenCount = attentionMask.Count(v => v != 0);
        TargetCount = labels.Count(v => v != IgnoreIndex);
    }

    /// <summary>Rows in the batch.</summary>
    public int Rows { get; }

    /// <summary>Tokens per row (the longest row; shorter ones are padded on the right).</summary>
    public int Length { get; }

    /// <summary>Token ids; padding is 0.</summary>
    public long[] InputIds { get; }

    /// <summary>1 for a real token, 0 for padding.</summary>
    public long[] AttentionMask { get; }

    /// <summary>The id at each target position, <see cref="IgnoreIndex"/> elsewhere; position t is predicted from positions before t.</summary>
    public long[] Labels { get; }

    /// <summary>Each token's position within its own example (0 for padding).</summary>
    public long[] PositionIds { get; }

    /// <summary>For packed rows, which example of its row each token belongs to (padding gets its own id); <c>null</c> when no row is packed.</summary>
    public long[]? SequenceIds { get; }

    /// <summary>Real (non-padding) tokens in the batch.</summary>
    public int TokenCount { get; }

    /// <summary>Positions whose token is a training target.</summary>
    public int TargetCount { get; }

    /// <summary>Whether any row is shorter than <see cref="Length"/>.</summary>
    public bool HasPadding => TokenCount < Rows * Length;

    /// <summary>Creates the model input; the tensors belong to the current dispose scope.</summary>
    /// <param name="device">Where to put the tensors.</param>
    /// <returns>The input (padding mask only when a row is padded, sequence ids only when a row is packed).</returns>
    public ModelInput ToModelInput(Device device) => new()
    {
        InputIds = ToTensor(InputIds, device),
        AttentionMask = HasPadding ? ToTensor(AttentionMask, device) : null,
        PositionIds = ToTensor(PositionIds, device),
        SequenceIds = SequenceIds is null ? null : ToTensor(SequenceIds, device),
    };

    /// <summary>The labels as a [rows, length] int64 tensor in the current dispose scope.</summary>
    /// <param name="device">Where to put the tensor.</param>
    /// <returns>The labels.</returns>
    public Tensor LabelsTensor(Device device) => ToTensor(Labels, device);

    private Tensor ToTensor(long[] values, Device device) => tensor(values, [Rows, Length], dtype: ScalarType.Int64, device: device);
}
