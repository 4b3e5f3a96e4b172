using FineTuning.Core.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

public sealed class AtomicWriteTests
{
    private static IEnumerable<KeyValuePair<string, Tensor>> ThrowsAfterFirst(Tensor first)
    {
        yield return new("first", first);
        throw new InvalidOperationException("boom after the first tensor");
    }

    private static string[] TempFiles(TempDirectory dir) =>
        Directory.GetFiles(dir.Path, "*" + AtomicFile.TemporarySuffix, SearchOption.TopDirectoryOnly);

    [Fact]
    public void FailingTensorWrite_LeavesTheExistingFileByteIdentical_AndNoTempFile()
    {
        using var dir = new TempDirectory();
        string path = dir.File("model.safetensors");
        using var original = torch.randn(4, 4);
        SafetensorsWriter.Write(path, [new("w", original)]);
        byte[] before = File.ReadAllBytes(path);

        using var replacement = torch.randn(8, 8);
        var ex = Assert.Throws<InvalidOperationException>(() => SafetensorsWriter.Write(path, ThrowsAfterFirst(replacement)));
        Assert.Equal("boom after the first tensor", ex.Message);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(TempFiles(dir));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void FailureAfterPartialContent_LeavesTheExistingFileByteIdentical_AndNoTempFile()
    {
        using var dir = new TempDirectory();
        string path = dir.File("config.json");
        File.WriteAllText(path, "{\"old\": true}");

        Assert.Throws<IOException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[10_000]);
            stream.Flush();
            throw new IOException("disk full (simulated)");
        }));

        Assert.Equal("{\"old\": true}", File.ReadAllText(path));
        Assert.Empty(TempFiles(dir));
    }

    [Fact]
    public void Overwrite_ReplacesALargerFileCompletely()
    {
        using var dir = new TempDirectory();
        string path = dir.File("model.safetensors");
        using var large = torch.randn(64, 64);
        using var small = torch.randn(2);
        SafetensorsWriter.Write(path, [new("w", large)]);
        SafetensorsWriter.Write(path, [new("w", small)]);

        using var reader = new SafetensorsReader(path);
        Assert.Equal(reader.DataStart + 8, new FileInfo(path).Length);
        using var read = reader.ReadTensor("w");
        TestTensors.AssertBitEqual(small, read);
        Assert.Empty(TempFiles(dir));
    }

    [Fact]
    public void WriteAllText_WritesUtf8WithoutBom()
    {
        using var dir = new TempDirectory();
        string path = dir.File("a.json");
        AtomicFile.WriteAllText(path, "{\"ü\": 1}");
        byte[] bytes = File.ReadAllBytes(path);
        Assert.Equal((byte)'{', bytes[0]);
        Assert.Equal("{\"ü\": 1}", File.ReadAllText(path));
    }
}
