using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// A seam-4 adapter (<see cref="DecoderLayer.AttentionOutputAdapter"/>, <see cref="DecoderLayer.MlpOutputAdapter"/>) that
/// also reads the residual stream the sublayer output is about to be added to. AdapterHub's sequential bottleneck
/// adapters with <c>original_ln_before = true</c> (its Pfeiffer / <c>seq_bn</c> config) take <c>sublayer + residual</c>
/// as their input, so they need both tensors.
/// </summary>
public interface IResidualAwareAdapter
{
    /// <summary>Transforms a sublayer's output; the layer then adds <paramref name="residual"/> to the result.</summary>
    /// <param name="sublayerOutput">The attention or MLP output, [batch, seq, hidden].</param>
    /// <param name="residual">The residual stream entering the sublayer, [batch, seq, hidden].</param>
    /// <returns>The tensor the layer adds to <paramref name="residual"/>.</returns>
    Tensor Forward(Tensor sublayerOutput, Tensor residual);
}
