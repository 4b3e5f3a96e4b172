using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Seam 2 — prepends virtual-token embeddings to the input embeddings (prompt tuning). The model extends the
/// attention mask over them, runs them through every layer, and drops their logits from the output, so callers
/// see logits aligned with their own tokens. With a KV cache the hook runs only at the first step.
/// </summary>
public interface IInputEmbeddingsHook
{
    /// <summary>Number of virtual tokens prepended.</summary>
    int VirtualTokenCount { get; }

    /// <summary>Returns the virtual-token embeddings for a batch.</summary>
    /// <param name="batchSize">The batch size.</param>
    /// <param name="dtype">The dtype of the token embeddings.</param>
    /// <returns>A tensor shaped [batch, virtual_tokens, hidden]; the caller disposes it.</returns>
    Tensor GetVirtualEmbeddings(long batchSize, ScalarType dtype);
}
