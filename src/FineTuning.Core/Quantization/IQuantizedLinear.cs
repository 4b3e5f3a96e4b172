using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// A Linear layer whose weight is stored quantized (<see cref="Linear4Bit"/>). Wrappers such as LoRA read its shape
/// from here, compute with <see cref="Dequantize"/> and write merged weights back with <see cref="Requantize"/>.
/// </summary>
public interface IQuantizedLinear
{
    /// <summary>Input size (columns of the weight).</summary>
    long InFeatures { get; }

    /// <summary>Output size (rows of the weight).</summary>
    long OutFeatures { get; }

    /// <summary>The bias, or <c>null</c>.</summary>
    Tensor? Bias { get; }

    /// <summary>The device the quantized weight is on.</summary>
    Device Device { get; }

    /// <summary>The weight restored to full precision, [out, in]; a new tensor the caller owns.</summary>
    /// <param name="dtype">The dtype; the dtype the weight had before quantization when <c>null</c>.</param>
    /// <returns>The dequantized weight.</returns>
    Tensor Dequantize(ScalarType? dtype = null);

    /// <summary>Replaces the stored weight by the quantization of <paramref name="weight"/>, with the same settings.</summary>
    /// <param name="weight">A float tensor [out, in].</param>
    void Requantize(Tensor weight);
}
