using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>One replaceable projection of the model graph (seam 1).</summary>
/// <param name="FullName">The module's full name, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
/// <param name="Parent">The module holding the slot.</param>
/// <param name="ChildName">The slot's name in its parent, e.g. <c>q_proj</c>.</param>
/// <param name="Module">The module now in the slot (a Linear, or a wrapper around one).</param>
public sealed record LinearSlot(string FullName, IReplaceableChildren Parent, string ChildName, nn.Module<Tensor, Tensor> Module);
