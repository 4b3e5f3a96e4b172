using System.Buffers.Binary;
using FineTuning.Core.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

/// <summary>Hand-built files: known values decode correctly, and every kind of malformed file is rejected clearly.</summary>
public sealed class SafetensorsValidationTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private string WriteFile(byte[] bytes)
    {
        string path = _dir.File(Guid.NewGuid().ToString("N") + ".safetensors");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    private static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    private CheckpointFormatException AssertRejected(byte[] file, string? tensorName, params string[] messageParts)
    {
        string path = WriteFile(file);
        var ex = Assert.Throws<CheckpointFormatException>(() => new SafetensorsReader(path).Dispose());
        Assert.Equal(path, ex.FilePath);
        Assert.Contains(path, ex.Message);
        Assert.Equal(tensorName, ex.TensorName);
        if (tensorName is not null)
        {
            Assert.Contains($"'{tensorName}'", ex.Message);
        }

        foreach (string part in messageParts)
        {
            Assert.Contains(part, ex.Message);
        }

        return ex;
    }

    [Fact]
    public void HandBuiltFile_DecodesToKnownValues()
    {
        // BF16 0x3F80 = 1.0, 0xC020 = -2.5; I32 7 and -1; U8 255; BOOL true/false.
        const string header =
            """{"__metadata__":{"format":"pt","author":"hand"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"h":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},"i":{"dtype":"I32","shape":[1,2],"data_offsets":[12,20]},"u":{"dtype":"U8","shape":[],"data_offsets":[20,21]},"b":{"dtype":"BOOL","shape":[2],"data_offsets":[21,23]}}""";
        byte[] data = Concat(
            F32(1.0f, -2.5f),
            [0x80, 0x3F, 0x20, 0xC0],
            [0x07, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
            [0xFF],
            [1, 0]);
        string path = WriteFile(TestTensors.BuildFile(header, data));

        using var reader = new SafetensorsReader(path);
        Assert.Equal("hand", reader.Metadata["author"]);
        Assert.Equal(["w", "h", "i", "u", "b"], reader.TensorNames);
        var info = reader.GetInfo("h");
        Assert.Equal(("h", "BF16", ScalarType.BFloat16, 8L, 12L, 4L, 2L), (info.Name, info.DType, info.ScalarType, info.Begin, info.End, info.ByteLength, info.ElementCount));

        using var w = reader.ReadTensor("w");
        Assert.Equal(new[] { 1.0f, -2.5f }, w.data<float>().ToArray());

        using var h = reader.ReadTensor("h");
        Assert.Equal(ScalarType.BFloat16, h.dtype);
        Assert.Equal(1.0f, h.ReadCpuBFloat16(0));
        Assert.Equal(-2.5f, h.ReadCpuBFloat16(1));

        using var i = reader.ReadTensor("i");
        Assert.Equal(new long[] { 1, 2 }, i.shape);
        Assert.Equal(new[] { 7, -1 }, i.data<int>().ToArray());

        using var u = reader.ReadTensor("u");
        Assert.Equal(255, u.ReadCpuByte(0));

        using var b = reader.ReadTensor("b");
        Assert.Equal(new[] { true, false }, b.data<bool>().ToArray());
    }

    [Fact]
    public void UnsupportedDType_NamesFileTensorDTypeAndSupportedList()
    {
        const string header = """{"q":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""";
        AssertRejected(TestTensors.BuildFile(header, [1, 2]), "q", "F8_E4M3", "F32, F16, BF16");
    }

    [Fact]
    public void TruncatedFile_IsRejected()
    {
        const string header = """{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1, 2, 3)), "w", "truncated", "12 bytes");
    }

    [Fact]
    public void DataOffsetsOutsideTheFile_AreRejected()
    {
        const string header = """{"w":{"dtype":"F32","shape":[1],"data_offsets":[1000,1004]},"v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1)), "w", "[1000, 1004]", "outside the data area");
    }

    [Fact]
    public void MalformedJsonHeader_IncludesTheParserReason()
    {
        const string header = """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}""";
        var ex = AssertRejected(TestTensors.BuildFile(header, F32(1)), null, "malformed JSON header");
        Assert.IsAssignableFrom<System.Text.Json.JsonException>(ex.InnerException);
        Assert.Contains(ex.InnerException!.Message, ex.Message);
    }

    [Fact]
    public void HeaderLengthBeyondTheFile_IsRejected()
    {
        const string header = """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1), declaredHeaderLength: 1_000_000), null, "1000000", "beyond the end of the file");
    }

    [Fact]
    public void FileShorterThanTheLengthPrefix_IsRejected()
    {
        AssertRejected([1, 2, 3], null, "3 bytes");
    }

    [Fact]
    public void OverlappingOffsets_AreRejected()
    {
        const string header = """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1, 2, 3)), "b", "overlaps tensor 'a'");
    }

    [Fact]
    public void SizeNotMatchingShape_IsRejected()
    {
        const string header = """{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1, 2)), "w", "[3]", "needs 12 bytes", "8 bytes");
    }

    [Theory]
    [InlineData("""{"w":{"shape":[1],"data_offsets":[0,4]}}""", "dtype")]
    [InlineData("""{"w":{"dtype":"F32","data_offsets":[0,4]}}""", "shape")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1]}}""", "data_offsets")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", "non-negative")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}""", "exactly 2")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}""", "end is before")]
    [InlineData("""{"w":[1,2]}""", "expected an object")]
    public void MalformedEntries_AreRejected(string header, string expected)
    {
        AssertRejected(TestTensors.BuildFile(header, F32(1, 2)), "w", expected);
    }

    [Fact]
    public void NonStringMetadata_IsRejected()
    {
        const string header = """{"__metadata__":{"step":3},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        AssertRejected(TestTensors.BuildFile(header, F32(1)), null, "__metadata__", "'step'");
    }

    [Fact]
    public void MissingTensor_NamesFileAndTensor()
    {
        const string header = """{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""";
        string path = WriteFile(TestTensors.BuildFile(header, F32(1)));
        using var reader = new SafetensorsReader(path);

        var ex = Assert.Throws<CheckpointFormatException>(() => reader.ReadTensor("nope"));
        Assert.Equal("nope", ex.TensorName);
        Assert.Contains(path, ex.Message);
        Assert.Contains("'nope'", ex.Message);
    }

    [Fact]
    public void ReadInto_WrongShape_NamesFileTensorAndBothShapes()
    {
        const string header = """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        string path = WriteFile(TestTensors.BuildFile(header, F32(1, 2)));
        using var reader = new SafetensorsReader(path);
        using var destination = torch.zeros(2, 1);

        var ex = Assert.Throws<CheckpointFormatException>(() => reader.ReadInto("w", destination));
        Assert.Equal("w", ex.TensorName);
        Assert.Contains(path, ex.Message);
        Assert.Contains("shape [2]", ex.Message);
        Assert.Contains("expects shape [2, 1]", ex.Message);
    }

    [Fact]
    public void ReadInto_MetaDestination_IsAClearError()
    {
        const string header = """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        string path = WriteFile(TestTensors.BuildFile(header, F32(1, 2)));
        using var reader = new SafetensorsReader(path);
        using var destination = torch.zeros(2, device: torch.META);

        var ex = Assert.Throws<ArgumentException>(() => reader.ReadInto("w", destination));
        Assert.Contains("meta device", ex.Message);
        Assert.Contains("'w'", ex.Message);
    }

    [Fact]
    public void ReadExactly_checks_every_tensor_before_it_reads_any()
    {
        string path = _dir.File("exact.safetensors");
        using var a = tensor(new[] { 1f, 2f });
        using var b = tensor(new[] { 3f, 4f, 5f });
        SafetensorsWriter.Write(path, [new("a", a), new("b", b)], SafetensorsWriter.DefaultMetadata);
        using var intoA = zeros(2);
        using var wrongB = zeros(4);
        using var rightB = zeros(3);
        using var reader = new SafetensorsReader(path);
        static Exception Fail(string what) => new InvalidDataException(what);

        // 'a' comes first and fits, but 'b' does not: nothing may be written.
        var error = Assert.Throws<InvalidDataException>(() => reader.ReadExactly(
            new Dictionary<string, Tensor> { ["a"] = intoA, ["b"] = wrongB }, _ => Fail("extra"), _ => Fail("missing"), (name, info) => Fail($"shape {name} {info.ShapeText}")));
        Assert.Equal("shape b [3]", error.Message);
        Assert.Equal([0f, 0f], intoA.data<float>().ToArray());

        Assert.Equal("missing", Assert.Throws<InvalidDataException>(() => reader.ReadExactly(
            new Dictionary<string, Tensor> { ["a"] = intoA, ["b"] = rightB, ["c"] = zeros(1) }, _ => Fail("extra"), _ => Fail("missing"), (_, _) => Fail("shape"))).Message);
        Assert.Equal("extra", Assert.Throws<InvalidDataException>(() => reader.ReadExactly(
            new Dictionary<string, Tensor> { ["a"] = intoA }, names => Fail(names.Single() == "b" ? "extra" : "wrong"), _ => Fail("missing"), (_, _) => Fail("shape"))).Message);
        Assert.Equal([0f, 0f], intoA.data<float>().ToArray());

        reader.ReadExactly(new Dictionary<string, Tensor> { ["a"] = intoA, ["b"] = rightB }, _ => Fail("extra"), _ => Fail("missing"), (_, _) => Fail("shape"));
        Assert.Equal([1f, 2f], intoA.data<float>().ToArray());
        Assert.Equal([3f, 4f, 5f], rightB.data<float>().ToArray());
    }
}
