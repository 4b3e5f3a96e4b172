using FineTuning.Core.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

/// <summary>The one-pass CPU dequantization must give exactly what the tensor-op path (used on other devices) gives.</summary>
public class FourBitCpuDequantizerTests
{
    public static TheoryData<QuantizationType, int, bool, ScalarType, long> Cases { get; } = new()
    {
        { QuantizationType.NF4, 64, true, ScalarType.BFloat16, 4096 * 3 },
        { QuantizationType.NF4, 32, false, ScalarType.Float32, 1001 },
        { QuantizationType.NF4, 4096, true, ScalarType.Float16, 70_001 },
        { QuantizationType.FP4, 128, false, ScalarType.BFloat16, 257 },
        { QuantizationType.Int4, 64, true, ScalarType.Float32, 200_003 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Cpu_path_is_bit_identical_to_the_tensor_op_path(QuantizationType type, int blockSize, bool doubleQuant, ScalarType dtype, long count)
    {
        using var scope = NewDisposeScope();
        var input = randn([count], generator: new Generator(7)) * 3;
        using var quantized = Blockwise4BitQuantizer.Quantize(input, type, blockSize, doubleQuant);

        var fast = Blockwise4BitQuantizer.Dequantize(quantized, dtype);
        var reference = Blockwise4BitQuantizer.DequantizeWithTensorOps(quantized.Packed, quantized.State, dtype);

        Assert.Equal(dtype, fast.dtype);
        Assert.Equal(reference.shape, fast.shape);
        // Compare the bytes, so a NaN or a signed zero cannot hide a difference.
        Assert.True(fast.contiguous().bytes.SequenceEqual(reference.contiguous().bytes));
    }

    [Fact]
    public void One_byte_is_two_table_values_times_the_block_absmax()
    {
        // Byte 0x0F holds code 0 (high nibble, first element) and code 15; NF4's table is -1 … 1, absmax 2.5.
        using var packed = tensor(new byte[] { 0x0F, 0x7F }).view(2, 1);
        using var absmax = tensor(new[] { 2.5f });
        using var code = tensor(FourBitCodeTable.NF4.ToArray());
        using var state = new QuantState(absmax.alias(), code.alias(), [3], ScalarType.Float32, 64, QuantizationType.NF4);

        using var restored = Blockwise4BitQuantizer.Dequantize(packed, state);

        Assert.Equal([-2.5f, 2.5f, 0f], restored.data<float>().ToArray());
    }
}
