using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>
/// What sits at a decoder layer's sublayer-output seam: AdapterHub's <c>BottleneckLayer</c>, holding its adapters in
/// the child <c>adapters</c> by name (<c>…mlp_adapter.adapters.default.adapter_up.weight</c>).
/// </summary>
/// <remarks>
/// For a sublayer output <c>m</c> and the residual stream <c>h</c> entering the sublayer, AdapterHub's Llama layer
/// computes (<c>pre_forward</c>, <c>Adapter.forward</c>, <c>post_forward</c> with no layer norm):
/// <c>x = original_ln_before ? m + h : m</c>, <c>r = residual_before_ln ? m : x</c>,
/// <c>out = r + dropout(up(act(down(x)))·scaling)</c>, and the layer's new residual stream is <c>out + h</c>.
/// This module returns <c>out</c>; the decoder layer adds <c>h</c>. The input is cast to the adapter's dtype and
/// <c>out</c> back to the sublayer output's dtype.
/// </remarks>
public sealed class BottleneckAdapterLayer : nn.Module<Tensor, Tensor>, IResidualAwareAdapter
{
#pragma warning disable IDE1006 // field names are AdapterHub's module names
    private readonly AdapterModuleDict<BottleneckAdapter> adapters = new();
#pragma warning restore IDE1006

    /// <summary>Creates the layer with one adapter.</summary>
    /// <param name="adapterName">The adapter's name (a key segment of its parameters).</param>
    /// <param name="adapter">The adapter.</param>
    /// <param name="originalLnBefore">AdapterHub's <c>original_ln_before</c>.</param>
    /// <param name="residualBeforeLn">AdapterHub's <c>residual_before_ln</c>.</param>
    public BottleneckAdapterLayer(string adapterName, BottleneckAdapter adapter, bool originalLnBefore, bool residualBeforeLn) : base(nameof(BottleneckAdapterLayer))
    {
        ArgumentNullException.ThrowIfNull(adapter);
        AdapterName = adapterName;
        OriginalLnBefore = originalLnBefore;
        ResidualBeforeLn = residualBeforeLn;
        RegisterComponents();
        adapters.Add(adapterName, adapter);
    }

    /// <summary>The adapter's name.</summary>
    public string AdapterName { get; }

    /// <summary>The adapter.</summary>
    public BottleneckAdapter Adapter => adapters[AdapterName];

    /// <summary>Whether the adapter's input includes the residual stream (<c>original_ln_before</c>).</summary>
    public bool OriginalLnBefore { get; }

    /// <summary>Whether the adapter's residual is the sublayer output rather than the adapter input (<c>residual_before_ln</c>).</summary>
    public bool ResidualBeforeLn { get; }

    /// <inheritdoc />
    public Tensor Forward(Tensor sublayerOutput, Tensor residual)
    {
        ArgumentNullException.ThrowIfNull(sublayerOutput);
        using var scope = NewDisposeScope();
        var input = OriginalLnBefore ? sublayerOutput + residual : sublayerOutput;
        var adapterResidual = ResidualBeforeLn ? sublayerOutput : input;
        var adapter = Adapter;
        var delta = adapter.call(input.to(adapter.Up.weight!.dtype));
        return (adapterResidual + delta).to(sublayerOutput.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Runs the adapter without the residual stream; only valid when <see cref="OriginalLnBefore"/> is false.</summary>
    /// <param name="input">The sublayer output.</param>
    /// <returns>The adapted output.</returns>
    /// <exception cref="InvalidOperationException">The adapter needs the residual stream.</exception>
    public override Tensor forward(Tensor input) => OriginalLnBefore
        ? throw new InvalidOperationException("This adapter's input includes the residual stream (original_ln_before); call Forward(sublayerOutput, residual).")
        : Forward(input, input);
}
