using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>What every decoder layer of one forward pass shares: rotary tables, the attention mask and the cache.</summary>
/// <param name="Cos">Rotary cosines, [batch, seq, head_dim] fp32.</param>
/// <param name="Sin">Rotary sines, [batch, seq, head_dim] fp32.</param>
/// <param name="Mask">Boolean mask [batch, 1, seq, keys] (true = attend), or <c>null</c> when <paramref name="IsCausal"/> suffices.</param>
/// <param name="IsCausal">Whether plain causal attention applies (no explicit mask needed).</param>
/// <param name="Cache">The KV cache, or <c>null</c>.</param>
public sealed record AttentionContext(Tensor Cos, Tensor Sin, Tensor? Mask, bool IsCausal, KeyValueCache? Cache);
