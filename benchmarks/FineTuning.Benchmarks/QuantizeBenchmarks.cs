using BenchmarkDotNet.Attributes;
using FineTuning.Core.Quantization;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// NF4 blockwise quantization (blocksize 64, double quantization) of a 4096 × 4096 fp32 tensor, and dequantization
/// to bf16. Throughput: <see cref="InputBytes"/> (64 MiB of fp32) / Mean for Quantize, <see cref="OutputBytes"/>
/// (32 MiB of bf16) / Mean for Dequantize.
/// </summary>
[WarmupCount(1)]
[IterationCount(5)]
public class QuantizeBenchmarks
{
    /// <summary>Rows and columns of the tensor.</summary>
    public const int Size = 4096;

    /// <summary>Bytes of fp32 input.</summary>
    public const long InputBytes = (long)Size * Size * 4;

    /// <summary>Bytes of bf16 output.</summary>
    public const long OutputBytes = (long)Size * Size * 2;

    private Tensor input = null!;
    private BlockwiseQuantized4Bit quantized = null!;

    /// <summary>Creates the seeded input and its quantized form.</summary>
    [GlobalSetup]
    public void Setup()
    {
        using var generator = new TorchSharp.torch.Generator(42);
        input = randn(Size, Size, dtype: ScalarType.Float32, generator: generator);
        quantized = Blockwise4BitQuantizer.Quantize(input, QuantizationType.NF4, 64, doubleQuant: true);
    }

    /// <summary>Frees the tensors.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        quantized.Dispose();
        input.Dispose();
    }

    /// <summary>fp32 → NF4 (blocksize 64, double quantization).</summary>
    /// <returns>Storage bytes of the result.</returns>
    [Benchmark]
    public long Quantize()
    {
        using var result = Blockwise4BitQuantizer.Quantize(input, QuantizationType.NF4, 64, doubleQuant: true);
        return result.StorageBytes;
    }

    /// <summary>NF4 → bf16.</summary>
    /// <returns>Elements of the result.</returns>
    [Benchmark]
    public long Dequantize()
    {
        using var result = Blockwise4BitQuantizer.Dequantize(quantized, ScalarType.BFloat16);
        return result.numel();
    }
}
