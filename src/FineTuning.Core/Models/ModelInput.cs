using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Everything one forward pass of <see cref="CausalLanguageModel"/> can take. Exactly one of
/// <see cref="InputIds"/> and <see cref="InputEmbeddings"/> is set.
/// </summary>
public sealed record ModelInput
{
    /// <summary>Token ids, [batch, seq] int64.</summary>
    public Tensor? InputIds { get; init; }

    /// <summary>Token embeddings instead of ids, [batch, seq, hidden] in the model dtype.</summary>
    public Tensor? InputEmbeddings { get; init; }

    /// <summary>
    /// Padding mask over the cached and the new positions, [batch, past + seq], 1 = real token, 0 = padding.
    /// <c>null</c> means every position is real.
    /// </summary>
    public Tensor? AttentionMask { get; init; }

    /// <summary>Absolute positions of the new tokens, [batch, seq] int64; <c>null</c> means past..past+seq-1.</summary>
    public Tensor? PositionIds { get; init; }

    /// <summary>
    /// Packed-sequence ids of the new tokens, [batch, seq] int64, or <c>null</c>. When set, a token attends only to
    /// earlier tokens with the same id, so several examples packed into one row never see each other (give each
    /// example its own <see cref="PositionIds"/> starting at 0). Needs no cache and no input-embeddings hook.
    /// </summary>
    public Tensor? SequenceIds { get; init; }

    /// <summary>The KV cache to read past positions from and append the new ones to; <c>null</c> for none.</summary>
    public KeyValueCache? Cache { get; init; }

    /// <summary>Compute logits for the last position only (generation); otherwise for every position.</summary>
    public bool LastPositionLogitsOnly { get; init; }

    /// <summary>Creates an input from token ids.</summary>
    /// <param name="inputIds">Token ids, [batch, seq] int64.</param>
    /// <param name="attentionMask">Optional padding mask, [batch, seq].</param>
    /// <returns>The input.</returns>
    public static ModelInput FromIds(Tensor inputIds, Tensor? attentionMask = null) => new() { InputIds = inputIds, AttentionMask = attentionMask };
}
