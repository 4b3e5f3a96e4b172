using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>The result of a forward pass; owns its tensors.</summary>
/// <param name="Logits">Next-token logits in fp32, [batch, seq, vocab] (seq = 1 when only the last position was asked for).</param>
public sealed record ModelOutput(Tensor Logits) : IDisposable
{
    /// <inheritdoc />
    public void Dispose() => Logits.Dispose();
}
