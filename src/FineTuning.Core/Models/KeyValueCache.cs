using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Keys and values of past positions, one pair per decoder layer, so decoding a new token costs one position's
/// work. Keys are stored after the rotary embedding, shaped [batch, kv_heads, length, head_dim].
/// The cache owns its tensors (outside any dispose scope); dispose it when generation ends.
/// </summary>
public sealed class KeyValueCache : IDisposable
{
    private readonly Tensor?[] keys;
    private readonly Tensor?[] values;

    /// <summary>Creates an empty cache.</summary>
    /// <param name="layerCount">Number of decoder layers of the model.</param>
    public KeyValueCache(int layerCount)
    {
        keys = new Tensor?[layerCount];
        values = new Tensor?[layerCount];
    }

    /// <summary>Number of positions cached (including virtual tokens a strategy prepended).</summary>
    public long Length => keys[0]?.shape[2] ?? 0;

    /// <summary>Virtual tokens that an input-embeddings hook prepended at the first step (prompt tuning).</summary>
    public int VirtualTokenCount { get; internal set; }

    /// <summary>Appends one layer's new keys and values and returns the full sequences to attend over.</summary>
    /// <param name="layerIndex">The decoder layer.</param>
    /// <param name="newKeys">Keys of the new positions.</param>
    /// <param name="newValues">Values of the new positions.</param>
    /// <returns>Fresh aliases of all cached keys and values; the caller may dispose them.</returns>
    public (Tensor Keys, Tensor Values) Append(int layerIndex, Tensor newKeys, Tensor newValues)
    {
        var oldKeys = keys[layerIndex];
        var oldValues = values[layerIndex];
        using (no_grad())
        {
            keys[layerIndex] = (oldKeys is null ? newKeys.detach().clone() : cat([oldKeys, newKeys.detach()], dim: 2)).DetachFromDisposeScope();
            values[layerIndex] = (oldValues is null ? newValues.detach().clone() : cat([oldValues, newValues.detach()], dim: 2)).DetachFromDisposeScope();
        }

        oldKeys?.Dispose();
        oldValues?.Dispose();
        return (keys[layerIndex]!.alias(), values[layerIndex]!.alias());
    }

    /// <summary>Returns fresh aliases of one layer's cached keys and values, or <c>null</c> when nothing is cached.</summary>
    /// <param name="layerIndex">The decoder layer.</param>
    /// <returns>Keys and values shaped [batch, kv_heads, length, head_dim].</returns>
    public (Tensor Keys, Tensor Values)? GetLayer(int layerIndex) =>
        keys[layerIndex] is { } k && values[layerIndex] is { } v ? (k.alias(), v.alias()) : null;

    /// <inheritdoc />
    public void Dispose()
    {
        for (var i = 0; i < keys.Length; i++)
        {
            keys[i]?.Dispose();
            values[i]?.Dispose();
            keys[i] = null;
            values[i] = null;
        }
    }
}
