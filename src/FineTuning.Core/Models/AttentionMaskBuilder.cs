using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>Builds the boolean attention mask shared by every layer of one forward pass.</summary>
internal static class AttentionMaskBuilder
{
    /// <summary>
    /// Combines causality, an optional sliding window, key padding, packed-sequence ids and prefix positions into a
    /// mask [batch, 1, seq, prefix + past + seq] (true = attend). Returns no mask where SDPA's causal flag suffices.
    /// A padded query position is allowed to attend to itself so no row is fully masked (which would give NaN).
    /// With <paramref name="sequenceIds"/> ([batch, seq], only without past positions) a query attends only to keys
    /// of its own sequence (a block-diagonal causal mask); prefix positions stay visible to every sequence.
    /// </summary>
    public static (Tensor? Mask, bool IsCausal) Build(long batch, long seq, long past, int prefixLength, Tensor? padding, int? slidingWindow, Device device, Tensor? sequenceIds = null)
    {
        var total = past + seq;
        var windowMatters = slidingWindow is { } w && total > w;
        if (sequenceIds is not null && past != 0)
        {
            throw new ArgumentException("Sequence ids (packed rows) cannot be combined with cached past positions.", nameof(sequenceIds));
        }

        if (padding is null && sequenceIds is null && prefixLength == 0 && !windowMatters)
        {
            if (seq == 1)
            {
                return (null, false);
            }

            if (past == 0)
            {
                return (null, true);
            }
        }

        using var scope = NewDisposeScope();
        var queryPositions = arange(past, total, dtype: ScalarType.Int64, device: device).unsqueeze(1);
        var keyPositions = arange(0, total, dtype: ScalarType.Int64, device: device).unsqueeze(0);
        var allowed = keyPositions <= queryPositions;
        if (windowMatters)
        {
            allowed = allowed & ((queryPositions - keyPositions) < slidingWindow!.Value);
        }

        allowed = allowed.view(1, 1, seq, total).expand(batch, 1, seq, total);
        if (padding is not null)
        {
            allowed = (allowed & padding.to(ScalarType.Bool).view(batch, 1, 1, total))
                | (keyPositions == queryPositions).view(1, 1, seq, total);
        }

        if (sequenceIds is not null)
        {
            allowed = allowed & (sequenceIds.view(batch, 1, seq, 1) == sequenceIds.view(batch, 1, 1, seq));
        }

        if (prefixLength > 0)
        {
            allowed = cat([ones(batch, 1, seq, prefixLength, dtype: ScalarType.Bool, device: device), allowed], dim: 3);
        }

        return (allowed.contiguous().MoveToOuterDisposeScope(), false);
    }
}
