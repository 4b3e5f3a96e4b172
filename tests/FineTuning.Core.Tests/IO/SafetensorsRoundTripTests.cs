using System.Buffers.Binary;
using System.Text.Json;
using FineTuning.Core.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

public sealed class SafetensorsRoundTripTests
{
    public static TheoryData<ScalarType> AllDTypes => new()
    {
        ScalarType.Float32, ScalarType.BFloat16, ScalarType.Float16, ScalarType.Float64,
        ScalarType.Int64, ScalarType.Int32, ScalarType.Int16, ScalarType.Int8, ScalarType.Byte, ScalarType.Bool,
    };

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void WriteThenRead_IsBitExact(ScalarType dtype)
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var matrix = TestTensors.Sample(dtype, 3, 5);
        using var scalar = TestTensors.Sample(dtype);
        using var empty = TestTensors.Sample(dtype, 0, 4);

        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["matrix"] = matrix, ["scalar"] = scalar, ["empty"] = empty });

        using var reader = new SafetensorsReader(path);
        Assert.Equal(["empty", "matrix", "scalar"], reader.TensorNames.Order(StringComparer.Ordinal));
        Assert.Equal(SafetensorsDType.GetName(dtype), reader.GetInfo("matrix").DType);
        Assert.Equal(new long[] { 3, 5 }, reader.GetInfo("matrix").Shape);
        Assert.Empty(reader.GetInfo("scalar").Shape);
        foreach (var (name, expected) in new[] { ("matrix", matrix), ("scalar", scalar), ("empty", empty) })
        {
            using var read = reader.ReadTensor(name);
            TestTensors.AssertBitEqual(expected, read, name);

            using var destination = torch.zeros(expected.shape, dtype);
            reader.ReadInto(name, destination);
            TestTensors.AssertBitEqual(expected, destination, name);
        }
    }

    [Fact]
    public void Header_IsEightByteAligned_HasDefaultMetadata_AndFileEndsAtLastOffset()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var a = torch.ones(3, ScalarType.BFloat16);
        using var b = torch.ones(1, ScalarType.Float32);
        using var c = torch.ones(2, ScalarType.Float32);
        using var flags = torch.ones(5, ScalarType.Bool);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["a"] = a, ["c"] = c, ["flags"] = flags, ["b"] = b });

        byte[] file = File.ReadAllBytes(path);
        long headerLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
        Assert.Equal(0, headerLength % 8);
        Assert.Equal(0, (8 + headerLength) % 8);

        using var header = JsonDocument.Parse(file.AsMemory(8, (int)headerLength));
        var keys = header.RootElement.EnumerateObject().Select(p => p.Name).ToArray();
        // __metadata__ first, then by element size (largest first), then by name.
        Assert.Equal(["__metadata__", "b", "c", "a", "flags"], keys);
        Assert.Equal("pt", header.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());

        long lastEnd = header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .Max(p => p.Value.GetProperty("data_offsets")[1].GetInt64());
        Assert.Equal(file.Length, 8 + headerLength + lastEnd);

        // Tensors are packed back to back in header order.
        long expectedBegin = 0;
        foreach (var entry in header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__"))
        {
            Assert.Equal(expectedBegin, entry.Value.GetProperty("data_offsets")[0].GetInt64());
            expectedBegin = entry.Value.GetProperty("data_offsets")[1].GetInt64();
        }
    }

    [Fact]
    public void CustomMetadata_RoundTrips_AndFormatIsAdded()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var t = torch.ones(2);
        SafetensorsWriter.Write(path, [new("w", t)], new Dictionary<string, string> { ["step"] = "12", ["note"] = "ü+x" });

        using var reader = new SafetensorsReader(path);
        Assert.Equal("12", reader.Metadata["step"]);
        Assert.Equal("ü+x", reader.Metadata["note"]);
        Assert.Equal("pt", reader.Metadata["format"]);
    }

    [Fact]
    public void NonContiguousInput_IsWrittenAsItsLogicalValues()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var source = torch.arange(12, dtype: ScalarType.Float32).reshape(3, 4);
        using var transposed = source.t();
        Assert.False(transposed.is_contiguous());

        SafetensorsWriter.Write(path, [new("t", transposed)]);

        using var reader = new SafetensorsReader(path);
        using var read = reader.ReadTensor("t");
        Assert.Equal(new long[] { 4, 3 }, read.shape);
        TestTensors.AssertBitEqual(transposed, read);
    }

    [Fact]
    public void ReadTensor_ConvertsDType_AndReadInto_ConvertsIntoOtherDestinations()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var bf16 = TestTensors.Sample(ScalarType.BFloat16, 4, 6);
        SafetensorsWriter.Write(path, [new("w", bf16)]);
        using var widened = bf16.to_type(ScalarType.Float32);

        using var reader = new SafetensorsReader(path);
        using var asFloat = reader.ReadTensor("w", dtype: ScalarType.Float32);
        TestTensors.AssertBitEqual(widened, asFloat);

        // Other dtype destination.
        using var floatDestination = torch.zeros(4, 6);
        reader.ReadInto("w", floatDestination);
        TestTensors.AssertBitEqual(widened, floatDestination);

        // Non-contiguous destination of the same dtype (a transposed view of a [6, 4] tensor).
        using var storage = torch.zeros(new long[] { 6, 4 }, ScalarType.BFloat16);
        using var view = storage.t();
        reader.ReadInto("w", view);
        TestTensors.AssertBitEqual(bf16, view);
    }

    [Fact]
    public void ReadInto_FillsAParameterThatRequiresGrad_WithoutRecordingAutograd()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var values = torch.randn(3, 2);
        SafetensorsWriter.Write(path, [new("w", values)]);

        using var parameter = new TorchSharp.Modules.Parameter(torch.zeros(3, 2), requires_grad: true);
        using var reader = new SafetensorsReader(path);
        reader.ReadInto("w", parameter);

        TestTensors.AssertBitEqual(values, parameter);
        Assert.True(parameter.requires_grad);
        Assert.True(parameter.is_leaf);
    }

    [Fact]
    public void LargeTensors_AreReadAndWrittenInChunks()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var values = torch.randn(37, 5);

        // 3-element chunks make the chunked path (used for tensors over 1 GB) run on a tiny tensor.
        SafetensorsWriter.Write(path, [new("w", values)], metadata: null, floatingPointDType: null, chunkBytes: 12);
        using var reader = new SafetensorsReader(path, chunkBytes: 12);
        using var read = reader.ReadTensor("w");
        TestTensors.AssertBitEqual(values, read);

        using var destination = torch.zeros(37, 5);
        reader.ReadInto("w", destination);
        TestTensors.AssertBitEqual(values, destination);
    }

    [Fact]
    public void DuplicateNames_AreRejected()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var t = torch.ones(2);

        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsWriter.Write(path, [new("w", t), new("w", t)]));
        Assert.Equal("w", ex.TensorName);
        Assert.Contains("'w'", ex.Message);
        Assert.Contains(path, ex.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void UnsupportedScalarType_IsRejectedOnWrite()
    {
        using var dir = new TempDirectory();
        string path = dir.File("t.safetensors");
        using var complex = torch.zeros(2, ScalarType.ComplexFloat32);

        var ex = Assert.Throws<CheckpointFormatException>(() => SafetensorsWriter.Write(path, [new("z", complex)]));
        Assert.Equal("z", ex.TensorName);
        Assert.Contains("BF16", ex.Message);
    }

    [Fact]
    public void DTypeMapping_CoversTheSupportedList()
    {
        Assert.Equal(["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"], SafetensorsDType.SupportedNames);
        foreach (string name in SafetensorsDType.SupportedNames)
        {
            Assert.True(SafetensorsDType.TryGetScalarType(name, out var type));
            Assert.Equal(name, SafetensorsDType.GetName(type));
        }

        Assert.False(SafetensorsDType.TryGetScalarType("U32", out _));
        Assert.Equal(2, SafetensorsDType.GetElementSize(ScalarType.BFloat16));
        Assert.Throws<ArgumentException>(() => SafetensorsDType.GetName(ScalarType.ComplexFloat64));
    }
}
