using FineTuning.Core.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using PyBridgeSafetensors = TorchSharp.PyBridge.Safetensors;

namespace FineTuning.Core.Tests.IO;

/// <summary>PyBridge's independent safetensors implementation reads our files, and we read its files.</summary>
public sealed class PyBridgeCrossCheckTests
{
    private static Dictionary<string, Tensor> SampleTensors() => new()
    {
        ["model.embed_tokens.weight"] = TestTensors.Sample(ScalarType.BFloat16, 6, 4),
        ["model.norm.weight"] = TestTensors.Sample(ScalarType.Float32, 4),
        ["model.half"] = TestTensors.Sample(ScalarType.Float16, 2, 3),
        ["model.double"] = TestTensors.Sample(ScalarType.Float64, 3),
        ["model.ids"] = TestTensors.Sample(ScalarType.Int64, 5),
        ["model.small_ints"] = TestTensors.Sample(ScalarType.Int32, 2, 2),
        ["model.bytes"] = TestTensors.Sample(ScalarType.Byte, 3),
        ["model.mask"] = TestTensors.Sample(ScalarType.Bool, 7),
    };

    [Fact]
    public void OurFile_IsReadByPyBridge_WithEqualValues()
    {
        using var dir = new TempDirectory();
        string path = dir.File("ours.safetensors");
        var tensors = SampleTensors();
        try
        {
            SafetensorsWriter.Write(path, tensors);

            var loaded = PyBridgeSafetensors.LoadStateDict(path);
            try
            {
                Assert.Equal(tensors.Keys.Order(), loaded.Keys.Order());
                foreach (var (name, expected) in tensors)
                {
                    TestTensors.AssertBitEqual(expected, loaded[name], name);
                }
            }
            finally
            {
                foreach (var t in loaded.Values)
                {
                    t.Dispose();
                }
            }
        }
        finally
        {
            foreach (var t in tensors.Values)
            {
                t.Dispose();
            }
        }
    }

    [Fact]
    public void PyBridgeFile_IsReadByUs_WithEqualValues()
    {
        using var dir = new TempDirectory();
        // A fresh path: PyBridge's SaveStateDict(path) opens with File.OpenWrite and does not truncate.
        string path = dir.File("pybridge.safetensors");
        var tensors = SampleTensors();
        try
        {
            PyBridgeSafetensors.SaveStateDict(path, tensors);

            using var reader = new SafetensorsReader(path);
            Assert.Equal(tensors.Keys.Order(), reader.TensorNames.Order());
            foreach (var (name, expected) in tensors)
            {
                using var read = reader.ReadTensor(name);
                TestTensors.AssertBitEqual(expected, read, name);
            }
        }
        finally
        {
            foreach (var t in tensors.Values)
            {
                t.Dispose();
            }
        }
    }
}
