using System.Buffers.Binary;
using System.Text;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

internal static class TestTensors
{
    /// <summary>The raw bytes of a tensor (copied to a contiguous CPU tensor first).</summary>
    public static byte[] Bytes(Tensor tensor)
    {
        using var _ = torch.no_grad();
        using var detached = tensor.detach();
        using var cpu = detached.cpu();
        using var contiguous = cpu.contiguous();
        return contiguous.bytes.ToArray();
    }

    public static void AssertBitEqual(Tensor expected, Tensor actual, string? name = null)
    {
        Assert.True(expected.dtype == actual.dtype, $"{name}: dtype {actual.dtype}, expected {expected.dtype}");
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(Bytes(expected).AsSpan().SequenceEqual(Bytes(actual)), $"{name}: bytes differ");
    }

    /// <summary>Builds a safetensors file by hand: 8-byte little-endian header length, the header text, then the data.</summary>
    public static byte[] BuildFile(string header, byte[] data, ulong? declaredHeaderLength = null)
    {
        byte[] headerBytes = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + headerBytes.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, declaredHeaderLength ?? (ulong)headerBytes.Length);
        headerBytes.CopyTo(file, 8);
        data.CopyTo(file, 8 + headerBytes.Length);
        return file;
    }

    /// <summary>A small tensor of the given dtype with varied values (random for floats, a range for integers).</summary>
    public static Tensor Sample(ScalarType dtype, params long[] shape)
    {
        using var random = torch.randn(shape, ScalarType.Float32) * 10;
        return dtype switch
        {
            ScalarType.Bool => random.gt(0),
            ScalarType.Float32 or ScalarType.Float64 or ScalarType.Float16 or ScalarType.BFloat16 => random.to_type(dtype),
            ScalarType.Byte => random.abs().to_type(dtype),
            _ => random.to_type(dtype),
        };
    }
}
