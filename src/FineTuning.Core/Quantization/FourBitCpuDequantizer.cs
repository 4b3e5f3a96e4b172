using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using FineTuning.Core.Backend;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// The CPU path of 4-bit dequantization as one pass over the packed bytes: each byte gives two codes, each code's table
/// value is multiplied by its block's float32 absmax and rounded once to the output dtype — the arithmetic of
/// bitsandbytes' kernel and of the tensor-op path, so the results are bit-identical to both. The tensor-op path makes
/// five passes over the data (unpack, look up, widen, scale, narrow) and is the one used on other devices.
/// </summary>
internal static class FourBitCpuDequantizer
{
    /// <summary>Elements handled by one parallel work item (a multiple of every supported block size).</summary>
    private const long ChunkElements = 1 << 16;

    /// <summary>Whether the one-pass path handles these inputs: CPU tensors and a float result dtype.</summary>
    public static bool Supports(Tensor packed, ScalarType dtype) =>
        packed.device_type == DeviceType.CPU && dtype is ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16;

    /// <summary>Dequantizes <paramref name="count"/> values.</summary>
    /// <param name="packed">uint8 codes, two per byte, the first in the high nibble.</param>
    /// <param name="code">The 16 table values (float32).</param>
    /// <param name="absmax">float32 [blocks], already restored when double-quantized.</param>
    /// <param name="blockSize">Values per block (even).</param>
    /// <param name="count">Values to restore.</param>
    /// <param name="dtype">The result dtype (float32, bfloat16 or float16).</param>
    /// <returns>A new 1-D CPU tensor of <paramref name="count"/> values.</returns>
    public static unsafe Tensor Dequantize(Tensor packed, Tensor code, Tensor absmax, int blockSize, long count, ScalarType dtype)
    {
        using var bytes = packed.contiguous();
        using var scales = absmax.to(ScalarType.Float32, CPU).contiguous();
        using var table = code.to(ScalarType.Float32, CPU).contiguous();
        if (table.numel() != 16)
        {
            throw new ArgumentException($"A 4-bit code table has 16 values, got {table.numel()}.", nameof(code));
        }

        var values = table.data<float>().ToArray();
        var result = empty([count], dtype, CPU);
        var source = (byte*)Address(bytes);
        var blockScales = (float*)Address(scales);
        var target = Address(result);
        NativeHeap.AdviseHugePages((nint)target, count * result.element_size());
        var chunks = (count + ChunkElements - 1) / ChunkElements;
        Parallel.For(0L, chunks, chunk =>
        {
            var start = chunk * ChunkElements;
            var end = Math.Min(count, start + ChunkElements);
            switch (dtype)
            {
                case ScalarType.Float32:
                    Run<float, ToFloat32>(source, values, blockScales, blockSize, start, end, (float*)target);
                    break;
                case ScalarType.BFloat16 when Avx512BW.IsSupported:
                    RunBFloat16Avx512(source, values, blockScales, blockSize, start, end, (ushort*)target);
                    break;
                case ScalarType.BFloat16:
                    Run<ushort, ToBFloat16>(source, values, blockScales, blockSize, start, end, (ushort*)target);
                    break;
                default:
                    Run<Half, ToFloat16>(source, values, blockScales, blockSize, start, end, (Half*)target);
                    break;
            }
        });
        return result;
    }

    /// <summary>The address of a contiguous CPU tensor's first byte (the tensor must stay alive while it is used).</summary>
    private static unsafe void* Address(Tensor tensor) => Unsafe.AsPointer(ref MemoryMarshal.GetReference(tensor.bytes));

    /// <summary>
    /// Restores elements [start, end) block by block: the block's 16 possible results are computed and rounded once,
    /// then each byte is two table reads. <paramref name="start"/> is a multiple of the (even) block size.
    /// </summary>
    private static unsafe void Run<T, TConvert>(byte* source, float[] code, float* absmax, int blockSize, long start, long end, T* target)
        where T : unmanaged
        where TConvert : struct, IConvert<T>
    {
        var table = stackalloc T[16];
        for (var blockStart = start; blockStart < end; blockStart += blockSize)
        {
            var scale = absmax[blockStart / blockSize];
            for (var k = 0; k < 16; k++)
            {
                table[k] = TConvert.From(code[k] * scale);
            }

            var blockEnd = Math.Min(end, blockStart + blockSize);
            var pairsEnd = blockStart + ((blockEnd - blockStart) & ~1L);
            for (var i = blockStart; i < pairsEnd; i += 2)
            {
                var packedByte = source[i >> 1];
                target[i] = table[packedByte >> 4];
                target[i + 1] = table[packedByte & 15];
            }

            if (pairsEnd < blockEnd)
            {
                target[pairsEnd] = table[source[pairsEnd >> 1] >> 4];
            }
        }
    }

    /// <summary>
    /// The bfloat16 case of <see cref="Run{T, TConvert}"/> with AVX-512: the block's 16 results are computed and rounded
    /// in one vector, then 16 packed bytes at a time are widened to 32 nibble indices (high nibble first) and looked up
    /// with one 16-bit permute. A block that ends before its full size (the tensor's last) goes the scalar way.
    /// </summary>
    private static unsafe void RunBFloat16Avx512(byte* source, float[] code, float* absmax, int blockSize, long start, long end, ushort* target)
    {
        var codes = Vector512.Create(code);
        for (var blockStart = start; blockStart < end; blockStart += blockSize)
        {
            if (end - blockStart < blockSize)
            {
                Run<ushort, ToBFloat16>(source, code, absmax, blockSize, blockStart, end, target);
                return;
            }

            var scaled = codes * Vector512.Create(absmax[blockStart / blockSize]);
            var bits = scaled.AsUInt32();
            var rounded = (bits + Vector512.Create(0x7FFFu) + ((bits >> 16) & Vector512<uint>.One)) >> 16;
            rounded = Vector512.ConditionalSelect(Vector512.Equals(scaled, scaled).AsUInt32(), rounded, Vector512.Create(0x7FC0u));
            var half = Avx512F.ConvertToVector256UInt16(rounded);
            var table = Vector512.Create(half, half);
            for (var i = blockStart; i < blockStart + blockSize; i += 32)
            {
                var bytes = Avx512F.ConvertToVector512UInt32(Vector128.Load(source + (i >> 1)));
                var indices = ((bytes >> 4) | ((bytes & Vector512.Create(15u)) << 16)).AsUInt16();
                Avx512BW.PermuteVar32x16(table, indices).Store(target + i);
            }
        }
    }

    /// <summary>A float32 → T rounding, resolved at compile time per result dtype.</summary>
    private interface IConvert<T>
    {
        static abstract T From(float value);
    }

    private readonly struct ToFloat32 : IConvert<float>
    {
        public static float From(float value) => value;
    }

    private readonly struct ToFloat16 : IConvert<Half>
    {
        public static Half From(float value) => (Half)value;
    }

    /// <summary>float32 → bfloat16 bits, round to nearest even, as libtorch's <c>c10::BFloat16</c> (NaN → 0x7FC0).</summary>
    private readonly struct ToBFloat16 : IConvert<ushort>
    {
        public static ushort From(float value)
        {
            if (float.IsNaN(value))
            {
                return 0x7FC0;
            }

            var bits = BitConverter.SingleToUInt32Bits(value);
            return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
        }
    }
}
