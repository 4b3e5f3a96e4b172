using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Root-mean-square layer norm: <c>weight * (x / sqrt(mean(x²) + eps))</c>, with the statistics computed in
/// fp32 and the result cast back to the input dtype before the weight is applied (as Hugging Face does).
/// </summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double eps;

    /// <summary>Creates the norm with a weight of ones.</summary>
    /// <param name="size">Width of the normalised dimension.</param>
    /// <param name="eps">Added to the mean square before the square root.</param>
    /// <param name="device">Where the weight lives (the meta device builds without memory).</param>
    /// <param name="dtype">The weight dtype.</param>
    public RmsNorm(int size, double eps, Device device, ScalarType dtype) : base(nameof(RmsNorm))
    {
        this.eps = eps;
        weight = new Parameter(ones(size, dtype: dtype, device: device).DetachFromDisposeScope());
        RegisterComponents();
    }

    /// <summary>The learned per-channel scale.</summary>
    public Parameter Weight => weight;

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.to(ScalarType.Float32);
        var variance = x.pow(2).mean([-1], keepdim: true);
        var normalised = (x * rsqrt(variance + eps)).to(input.dtype);
        return (weight * normalised).MoveToOuterDisposeScope();
    }
}
