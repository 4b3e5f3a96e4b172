using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Seam 3 — supplies per-layer key/value prefixes that every attention layer joins in front of its keys and
/// values (prefix tuning). Prefix positions are always attended to and carry no rotary embedding.
/// </summary>
public interface IAttentionPrefixSource
{
    /// <summary>Number of prefix positions (virtual tokens) per layer.</summary>
    int PrefixLength { get; }

    /// <summary>Returns the prefix keys and values of one layer for a batch.</summary>
    /// <param name="layerIndex">The decoder layer asking.</param>
    /// <param name="batchSize">The batch size of the current forward pass.</param>
    /// <param name="dtype">The compute dtype of the layer.</param>
    /// <returns>Keys and values shaped [batch, kv_heads, prefix_length, head_dim]; the caller disposes them.</returns>
    (Tensor Keys, Tensor Values) GetPrefix(int layerIndex, long batchSize, ScalarType dtype);
}
