using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// bitsandbytes' blockwise 4-bit quantization (<c>quantize_4bit</c> / <c>dequantize_4bit</c>), byte for byte: the
/// tensor is flattened row-major and split into blocks (the last may be partial); each block keeps its float32
/// absmax; each element is scaled by <c>clamp(x · (1f / absmax), −1, 1)</c> and mapped to a 4-bit code; two codes
/// share a byte, the first in the high nibble.
/// </summary>
/// <remarks>
/// <para>Code assignment follows bitsandbytes' CUDA kernels, which produce the checkpoints in circulation. NF4: the
/// number of float32 midpoints strictly below the scaled value (a value on a midpoint takes the lower code). FP4: bit
/// 3 is set for x &lt; 0, the magnitude bits come from strict comparisons of |x| with the pivots of
/// <c>dQuantizeFP4</c> (ties go toward zero). Int4 uses the FP4 rule with the k/7 midpoints. An all-zero block scales
/// by 1/0, so its values are NaN and get the codes CUDA gives NaN (NF4 code 0, which dequantizes to −1 · 0 = −0; FP4 and
/// Int4 their zero code).</para>
/// <para>Double quantization (<c>compress_statistics</c>): <c>offset = mean(absmax)</c> in float32, then
/// <c>absmax − offset</c> is quantized blockwise to 8 bits (blocks of 256) with the signed dynamic map; dequantization
/// restores <c>map[q] · absmax2[i / 256] + offset</c>.</para>
/// <para>All work runs on the input's device.</para>
/// </remarks>
public static class Blockwise4BitQuantizer
{
    /// <summary>The default block size, 64 (bitsandbytes on CUDA).</summary>
    public const int DefaultBlockSize = 64;

    /// <summary>The block size of the second level of double quantization, 256.</summary>
    public const int NestedBlockSize = 256;

    /// <summary>The block sizes bitsandbytes accepts: 32, 64, …, 4096.</summary>
    public static IReadOnlyList<int> SupportedBlockSizes { get; } = Array.AsReadOnly(new[] { 32, 64, 128, 256, 512, 1024, 2048, 4096 });

    /// <summary>Whether a block size is one of <see cref="SupportedBlockSizes"/>.</summary>
    /// <param name="blockSize">The block size.</param>
    /// <returns><c>true</c> when supported.</returns>
    public static bool IsSupportedBlockSize(int blockSize) => blockSize is >= 32 and <= 4096 && (blockSize & (blockSize - 1)) == 0;

    /// <summary>Quantizes a float32, bfloat16 or float16 tensor.</summary>
    /// <param name="input">The tensor (any shape; for a Linear weight [out, in]).</param>
    /// <param name="type">The 4-bit data type.</param>
    /// <param name="blockSize">Elements per block: 32, 64, …, 4096.</param>
    /// <param name="doubleQuant">Also quantize the absmax values (bitsandbytes' <c>compress_statistics</c>).</param>
    /// <returns>Packed codes and state, on the input's device; the caller owns them.</returns>
    /// <exception cref="ArgumentException">The block size is not supported, or the input is not fp32/bf16/fp16 or is empty.</exception>
    public static BlockwiseQuantized4Bit Quantize(Tensor input, QuantizationType type = QuantizationType.NF4, int blockSize = DefaultBlockSize, bool doubleQuant = false)
    {
        ArgumentNullException.ThrowIfNull(input);
        RequireBlockSize(blockSize, nameof(blockSize));
        if (input.dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"4-bit quantization takes float32, bfloat16 or float16 tensors, got {input.dtype}.", nameof(input));
        }

        if (input.is_meta)
        {
            throw new ArgumentException("Cannot quantize a tensor on the meta device: it has no values.", nameof(input));
        }

        var n = input.numel();
        if (n == 0)
        {
            throw new ArgumentException("Cannot quantize an empty tensor.", nameof(input));
        }

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var device = input.device;
        var grid = BlockLayout.Grid(input.detach().to(ScalarType.Float32).reshape(-1), n, blockSize);
        var absmax = grid.abs().amax([1]);
        var scaled = (grid * absmax.reciprocal().unsqueeze(1)).clamp(-1, 1).reshape(-1);
        var codes = AssignCodes(scaled, type);
        var pairs = codes.narrow(0, 0, 2 * ((n + 1) / 2)).view(-1, 2);
        var packed = (pairs.select(1, 0) * 16 + pairs.select(1, 1)).to(ScalarType.Byte).view(-1, 1);
        var code = tensor(FourBitCodeTable.Get(type).ToArray(), device: device);

        QuantState state;
        if (doubleQuant)
        {
            var offset = absmax.mean();
            var second = Blockwise8BitQuantizer.Quantize(absmax - offset, DynamicQuantizationMap.Signed, NestedBlockSize);
            var nested = new NestedQuantState(second.Absmax.DetachFromDisposeScope(), tensor(DynamicQuantizationMap.Signed.ToArray(), device: device).DetachFromDisposeScope(), NestedBlockSize);
            state = new QuantState(second.Codes.DetachFromDisposeScope(), code.DetachFromDisposeScope(), input.shape, input.dtype, blockSize, type, offset.DetachFromDisposeScope(), nested);
        }
        else
        {
            state = new QuantState(absmax.DetachFromDisposeScope(), code.DetachFromDisposeScope(), input.shape, input.dtype, blockSize, type);
        }

        return new BlockwiseQuantized4Bit(packed.DetachFromDisposeScope(), state);
    }

    /// <summary>
    /// Restores the values: <c>code[q] · absmax[block]</c> in float32, then cast to <paramref name="dtype"/>, in the
    /// state's shape.
    /// </summary>
    /// <param name="quantized">The packed codes and state.</param>
    /// <param name="dtype">The result dtype; the original dtype when <c>null</c>.</param>
    /// <returns>A new tensor on the codes' device.</returns>
    public static Tensor Dequantize(BlockwiseQuantized4Bit quantized, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        return Dequantize(quantized.Packed, quantized.State, dtype);
    }

    /// <summary>Restores the values of packed codes with their state (see <see cref="Dequantize(BlockwiseQuantized4Bit, ScalarType?)"/>).</summary>
    /// <param name="packed">uint8 [(n + 1) / 2, 1] (any shape with that many bytes).</param>
    /// <param name="state">The state.</param>
    /// <param name="dtype">The result dtype; the original dtype when <c>null</c>.</param>
    /// <returns>A new tensor on the codes' device.</returns>
    /// <exception cref="ArgumentException">The codes do not match the state.</exception>
    public static Tensor Dequantize(Tensor packed, QuantState state, ScalarType? dtype = null)
    {
        ArgumentNullException.ThrowIfNull(packed);
        ArgumentNullException.ThrowIfNull(state);
        var n = state.ElementCount;
        if (packed.dtype != ScalarType.Byte || packed.numel() != (n + 1) / 2)
        {
            throw new ArgumentException($"Packed 4-bit codes must be {(n + 1) / 2} uint8 values for shape [{string.Join(", ", state.Shape)}], got {packed.numel()} {packed.dtype}.", nameof(packed));
        }

        var resultType = dtype ?? state.DType;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        if (FourBitCpuDequantizer.Supports(packed, resultType))
        {
            return FourBitCpuDequantizer.Dequantize(packed, state.Code, DequantizeAbsmax(state), state.BlockSize, n, resultType)
                .reshape([.. state.Shape]).MoveToOuterDisposeScope();
        }

        return DequantizeWithTensorOps(packed, state, resultType).MoveToOuterDisposeScope();
    }

    /// <summary>The device-independent path of <see cref="Dequantize(Tensor, QuantState, ScalarType?)"/> (arguments already checked).</summary>
    internal static Tensor DequantizeWithTensorOps(Tensor packed, QuantState state, ScalarType dtype)
    {
        var n = state.ElementCount;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // One lookup per byte: row b of the pair table holds (code[b >> 4], code[b & 15]).
        var bytes = arange(256, dtype: ScalarType.Int64, device: packed.device);
        var pairTable = stack([state.Code.index_select(0, bytes.div(16, RoundingMode.floor)), state.Code.index_select(0, bytes.remainder(16))], dim: 1);
        var values = pairTable.index_select(0, packed.reshape(-1).to(ScalarType.Int32)).reshape(-1);
        var result = BlockLayout.Scale(values, DequantizeAbsmax(state), state.BlockSize, n);
        return result.reshape([.. state.Shape]).to(dtype).MoveToOuterDisposeScope();
    }

    /// <summary>The float32 absmax per block: the stored values, or <c>map[q] · absmax2[i / 256] + offset</c> with double quantization.</summary>
    /// <param name="state">The state.</param>
    /// <returns>A float32 tensor [n_blocks] (new when nested, else an alias of the stored absmax).</returns>
    public static Tensor DequantizeAbsmax(QuantState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (state.Nested is not { } nested)
        {
            return state.Absmax.alias();
        }

        using var scope = NewDisposeScope();
        var restored = Blockwise8BitQuantizer.Dequantize(state.Absmax, nested.Absmax, nested.BlockSize, nested.Code) + state.Offset!;
        return restored.MoveToOuterDisposeScope();
    }

    /// <summary>Throws when a block size is not 32, 64, …, 4096.</summary>
    internal static void RequireBlockSize(int blockSize, string parameterName)
    {
        if (!IsSupportedBlockSize(blockSize))
        {
            throw new ArgumentException($"4-bit block size must be one of {string.Join(", ", SupportedBlockSizes)} (a power of two from 32 to 4096), got {blockSize}.", parameterName);
        }
    }

    /// <summary>The uint8 code of each scaled value in [−1, 1]; NaN (an all-zero block) gets what CUDA's trees give it: NF4 0, FP4 0 (+0), Int4 7 (0).</summary>
    private static Tensor AssignCodes(Tensor scaled, QuantizationType type)
    {
        var device = scaled.device;
        var nan = scaled.isnan();
        if (type == QuantizationType.NF4)
        {
            var midpoints = tensor(FourBitCodeTable.Nf4Midpoints, device: device);
            return bucketize(scaled, midpoints, right: false).masked_fill(nan, 0).to(ScalarType.Byte);
        }

        // Sign-magnitude types: bit 3 for x < 0, the magnitude's code from its rank among the pivots (strict >).
        var pivots = type == QuantizationType.FP4 ? FourBitCodeTable.Fp4MagnitudePivots : FourBitCodeTable.Int4MagnitudePivots;
        byte[] positive = type == QuantizationType.FP4 ? FourBitCodeTable.Fp4MagnitudeCodes : [7, 6, 5, 4, 3, 2, 1, 0];
        byte[] negative = type == QuantizationType.FP4 ? [.. positive.Select(c => (byte)(c | 0b1000))] : [8, 9, 10, 11, 12, 13, 14, 15];
        var rank = bucketize(scaled.abs(), tensor(pivots, device: device), right: false).masked_fill(nan, 0);
        var positiveCodes = tensor(positive, device: device).index_select(0, rank);
        var negativeCodes = tensor(negative, device: device).index_select(0, rank);
        return where(scaled.lt(0), negativeCodes, positiveCodes);
    }
}
