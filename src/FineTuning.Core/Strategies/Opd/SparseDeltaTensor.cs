namespace FineTuning.Core.Strategies.Opd;

/// <summary>The part of a <see cref="SparseDelta"/> that changes one base tensor.</summary>
/// <param name="Name">The base parameter's name, e.g. <c>model.layers.0.mlp.down_proj.weight</c>.</param>
/// <param name="Shape">The base tensor's shape.</param>
/// <param name="DType">The base tensor's safetensors dtype (<c>F32</c>, <c>BF16</c>…).</param>
/// <param name="BaseTensorHash">SHA-256 of the base tensor (see <see cref="SparseDelta.HashTensor"/>).</param>
/// <param name="Indices">Strictly increasing flat (row-major) indices of the changed entries.</param>
/// <param name="Values">δ at those entries (fp32): the new entry is base + δ, rounded to the base dtype.</param>
public sealed record SparseDeltaTensor(string Name, IReadOnlyList<long> Shape, string DType, string BaseTensorHash, IReadOnlyList<long> Indices, IReadOnlyList<float> Values)
{
    /// <summary>OPD's anchor weights F̃ᴳ at the indices (kept so a resumed run anchors as before); <c>null</c> when not saved.</summary>
    public IReadOnlyList<float>? Anchor { get; init; }
}
