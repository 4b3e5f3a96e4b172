using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Seam 1 — a module whose projection children can be swapped for wrappers (LoRA, 4-bit layers). Replacing
/// re-registers the child under the same name and points the field used by <c>forward</c> at the new module,
/// so parameter names stay Hugging Face's (a wrapper keeps the original as <c>base_layer</c>).
/// </summary>
public interface IReplaceableChildren
{
    /// <summary>The names of the replaceable children (for example <c>q_proj</c>, <c>v_proj</c>).</summary>
    IReadOnlyList<string> ReplaceableChildNames { get; }

    /// <summary>Returns the current module in a slot.</summary>
    /// <param name="name">The child name.</param>
    /// <returns>The module now in the slot.</returns>
    nn.Module<Tensor, Tensor> GetChild(string name);

    /// <summary>Puts a module in a slot and returns the one it replaced (not disposed).</summary>
    /// <param name="name">The child name.</param>
    /// <param name="replacement">The new module.</param>
    /// <returns>The previous module.</returns>
    nn.Module<Tensor, Tensor> ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement);
}
