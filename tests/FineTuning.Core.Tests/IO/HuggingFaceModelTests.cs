using FineTuning.Core.IO;
using FineTuning.Core.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

public class HuggingFaceModelTests
{
    [Theory]
    [InlineData(ScalarType.Float32, false, null)]
    [InlineData(ScalarType.BFloat16, true, null)]
    [InlineData(ScalarType.Float16, false, 20_000L)]
    public void Save_then_load_is_bit_exact(ScalarType dtype, bool tied, long? maxShardBytes)
    {
        using var temp = new TempDirectory();
        var dir = temp.Path;
        using var model = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2, tied: tied), dtype);
        HuggingFaceModel.Save(model, dir, new WeightSaveOptions { MaxShardBytes = maxShardBytes });
        Assert.Equal(maxShardBytes is not null, File.Exists(Path.Combine(dir, "model.safetensors.index.json")));
        using var loaded = HuggingFaceModel.Load(dir);
        Assert.Equal(dtype, loaded.DType);
        Assert.Equal((model.Config with { TorchDtype = loaded.Config.TorchDtype }).ToJson(), loaded.Config.ToJson());
        var expected = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        var actual = loaded.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            Assert.Equal(dtype, actual[name].dtype);
            Assert.True(tensor.bytes.SequenceEqual(actual[name].bytes), $"{name} differs after the round trip");
        }
    }

    [Fact]
    public void Dtype_is_converted_on_request()
    {
        using var temp = new TempDirectory();
        var dir = temp.Path;
        using var model = TinyModels.Create(dtype: ScalarType.BFloat16);
        HuggingFaceModel.Save(model, dir);
        using var widened = HuggingFaceModel.Load(dir, new ModelLoadOptions { DType = ScalarType.Float32 });
        var original = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in widened.named_parameters())
        {
            Assert.Equal(ScalarType.Float32, p.dtype);
            Assert.True(p.eq(original[name].to(ScalarType.Float32)).all().item<bool>(), name);
        }
    }

    [Fact]
    public void A_checkpoint_for_another_shape_names_the_tensor()
    {
        using var temp = new TempDirectory();
        var dir = temp.Path;
        using var model = TinyModels.Create();
        HuggingFaceModel.Save(model, dir);
        var wider = model.Config with { IntermediateSize = 48 };
        File.WriteAllText(Path.Combine(dir, "config.json"), wider.ToJson());
        var error = Assert.Throws<CheckpointFormatException>(() => HuggingFaceModel.Load(dir));
        Assert.Contains("mlp", error.Message);
        Assert.Contains("model.safetensors", error.Message);
    }
}
