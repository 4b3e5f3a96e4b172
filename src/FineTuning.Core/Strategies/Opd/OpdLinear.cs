using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// A Linear whose effective weight is W₀ + scatter(δ, support): the original layer stays inside as <c>base_layer</c>,
/// untouched and frozen, and only the fp32 values δ at the selected flat indices are parameters
/// (<c>opd_weight_delta</c>, <c>opd_bias_delta</c>), so optimizer state exists for the selected scalars only and the
/// base stays bit-identical by construction.
/// </summary>
internal sealed class OpdLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // TorchSharp registers fields under their names; PEFT's name is base_layer.
    private readonly Linear base_layer;
#pragma warning restore IDE1006

    public OpdLinear(Linear baseLayer, Tensor? weightIndices, Tensor? biasIndices)
        : base(nameof(OpdLinear))
    {
        base_layer = baseLayer;
        register_module("base_layer", baseLayer);
        WeightIndices = weightIndices;
        BiasIndices = biasIndices;
        if (weightIndices is not null)
        {
            WeightDelta = new Parameter(zeros(weightIndices.shape[0], ScalarType.Float32, baseLayer.weight!.device));
            register_parameter("opd_weight_delta", WeightDelta);
        }

        if (biasIndices is not null)
        {
            BiasDelta = new Parameter(zeros(biasIndices.shape[0], ScalarType.Float32, baseLayer.bias!.device));
            register_parameter("opd_bias_delta", BiasDelta);
        }

        train(baseLayer.training);
    }

    public Linear BaseLayer => base_layer;

    /// <summary>The sorted flat indices (Int64) of the trained weight entries, or <c>null</c>.</summary>
    public Tensor? WeightIndices { get; }

    public Tensor? BiasIndices { get; }

    public Parameter? WeightDelta { get; }

    public Parameter? BiasDelta { get; }

    /// <summary>F̃ᴳ of the trained weight entries (for the anchor), aligned with <see cref="WeightIndices"/>.</summary>
    public Tensor? WeightAnchor { get; set; }

    public Tensor? BiasAnchor { get; set; }

    public override Tensor forward(Tensor input)
    {
        var weight = Effective(base_layer.weight!, WeightIndices, WeightDelta);
        var bias = base_layer.bias is { } b ? Effective(b, BiasIndices, BiasDelta) : null;
        return nn.functional.linear(input, weight, bias);
    }

    /// <summary>W₀ + scatter(δ): a new tensor in the base's dtype; gradients reach δ only.</summary>
    public static Tensor Effective(Tensor baseTensor, Tensor? indices, Tensor? delta)
    {
        if (indices is null || delta is null)
        {
            return baseTensor;
        }

        return baseTensor.flatten().index_add(0, indices, delta.to(baseTensor.dtype), 1).view(baseTensor.shape);
    }

    /// <summary>Frees the deltas, indices and anchors once the wrapper is taken out (the base layer lives on).</summary>
    public void DisposeDeltas()
    {
        foreach (var t in new[] { WeightIndices, BiasIndices, WeightAnchor, BiasAnchor, WeightDelta, BiasDelta })
        {
            t?.Dispose();
        }
    }
}
