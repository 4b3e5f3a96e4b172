using FineTuning.Core.Quantization;
using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>The scalars of one AdamW step, shared by every parameter.</summary>
/// <param name="LearningRate">This step's learning rate.</param>
/// <param name="Options">Betas, epsilon and weight decay.</param>
/// <param name="Step">The step number, from 1 (bias correction).</param>
internal readonly record struct AdamWStep(double LearningRate, OptimizerOptions Options, int Step)
{
    /// <summary>lr / (1 − β1^t).</summary>
    public double StepSize => LearningRate / (1 - Math.Pow(Options.Beta1, Step));

    /// <summary>√(1 − β2^t).</summary>
    public double SecondCorrectionRoot => Math.Sqrt(1 - Math.Pow(Options.Beta2, Step));
}

/// <summary>
/// The element-wise AdamW update (PyTorch's order of operations), on whole tensors or on any slices of them: the
/// result of an element depends only on that element, so updating a parameter page by page gives the same values.
/// </summary>
internal static class AdamWUpdate
{
    /// <summary>The index of 0 in the signed dynamic map; lower codes are negative.</summary>
    private const int SignedZeroCode = 127;

    /// <summary>Applies one update in place to fp32 tensors of one shape (call inside a dispose scope).</summary>
    /// <param name="master">The fp32 weights (or a slice).</param>
    /// <param name="expAvg">The first moment.</param>
    /// <param name="expAvgSq">The second moment.</param>
    /// <param name="grad">The fp32 gradient, already clipped.</param>
    /// <param name="decay">Whether weight decay applies to this parameter.</param>
    /// <param name="step">The step's scalars.</param>
    public static void Apply(Tensor master, Tensor expAvg, Tensor expAvgSq, Tensor grad, bool decay, in AdamWStep step)
    {
        var options = step.Options;
        if (decay && options.WeightDecay > 0)
        {
            master.mul_(1 - (step.LearningRate * options.WeightDecay));
        }

        expAvg.lerp_(grad, 1 - options.Beta1);
        expAvgSq.mul_(options.Beta2).addcmul_(grad, grad, value: 1 - options.Beta2);
        var denominator = (expAvgSq.sqrt() / step.SecondCorrectionRoot).add_(options.Epsilon);
        master.addcdiv_(expAvg, denominator, value: -step.StepSize);
    }

    /// <summary>
    /// bitsandbytes' 8-bit blockwise AdamW update of a slice (call inside a dispose scope): dequantize both moments,
    /// update in fp32 with <see cref="Apply"/>, requantize with new per-block absmax (first moment with the signed map
    /// and bitsandbytes' sign fix-up, second with the unsigned map). Elements whose gradient is not finite get zero
    /// moments and keep their weight.
    /// </summary>
    /// <param name="master">The fp32 weights (or a slice), flat.</param>
    /// <param name="expAvg">The first moment: uint8 codes (flat) and fp32 absmax per block, updated in place.</param>
    /// <param name="expAvgSq">The second moment, likewise.</param>
    /// <param name="grad">The fp32 gradient, flat, already clipped.</param>
    /// <param name="decay">Whether weight decay applies to this parameter.</param>
    /// <param name="step">The step's scalars.</param>
    public static void Apply8Bit(Tensor master, BlockwiseQuantized8Bit expAvg, BlockwiseQuantized8Bit expAvgSq, Tensor grad, bool decay, in AdamWStep step)
    {
        var m = Blockwise8BitQuantizer.Dequantize(expAvg, DynamicQuantizationMap.Signed);
        var v = Blockwise8BitQuantizer.Dequantize(expAvgSq, DynamicQuantizationMap.Unsigned);
        var finite = grad.isfinite();
        if (finite.all().item<bool>())
        {
            Apply(master, m, v, grad, decay, step);
        }
        else
        {
            var updated = master.clone();
            Apply(updated, m, v, grad.nan_to_num(0, 0, 0), decay, step);
            var notFinite = finite.logical_not();
            m.masked_fill_(notFinite, 0f);
            v.masked_fill_(notFinite, 0f);
            master.copy_(updated.where(finite, master));
        }

        Quantize(m, expAvg, DynamicQuantizationMap.Signed, fixSign: true);
        Quantize(v, expAvgSq, DynamicQuantizationMap.Unsigned, fixSign: false);
    }

    /// <summary>
    /// Quantizes <paramref name="values"/> into <paramref name="target"/>'s codes and absmax; with
    /// <paramref name="fixSign"/> (the first moment, signed map) a code of the wrong sign moves one code toward the
    /// value's sign, as bitsandbytes does.
    /// </summary>
    internal static void Quantize(Tensor values, BlockwiseQuantized8Bit target, IReadOnlyList<float> map, bool fixSign)
    {
        using var quantized = Blockwise8BitQuantizer.Quantize(values, map, target.BlockSize);
        var codes = quantized.Codes;
        if (fixSign)
        {
            // A code whose value has the other sign bit than the state's moves one code toward the state's sign
            // (in practice: a small negative value rounded to +0 becomes the smallest negative code).
            var wide = codes.to(ScalarType.Int16);
            var wrongSign = wide.lt(SignedZeroCode).ne(values.signbit());
            var moved = wide + values.gt(0).to(ScalarType.Int16).mul(2).sub(1);
            codes = moved.where(wrongSign, wide).to(ScalarType.Byte);
        }

        target.Codes.copy_(codes.reshape(target.Codes.shape));
        target.Absmax.copy_(quantized.Absmax);
    }
}
