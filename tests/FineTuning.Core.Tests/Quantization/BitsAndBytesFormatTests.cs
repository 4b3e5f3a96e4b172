using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using FineTuning.Core.Tests.Strategies.Lora;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

public class BitsAndBytesFormatTests
{
    private const string QProj = "model.layers.0.self_attn.q_proj";

    [Theory]
    [InlineData(QuantizationType.NF4, true, ScalarType.BFloat16, 64, 2)]
    [InlineData(QuantizationType.FP4, false, ScalarType.Float16, 32, 2)]
    [InlineData(QuantizationType.Int4, true, ScalarType.Float32, 128, 1)]
    public void Save_then_load_is_bit_exact(QuantizationType type, bool doubleQuant, ScalarType compute, int blockSize, int tied)
    {
        using var temp = new TempDirectory();
        using var model = SavedQuantizedModel(temp.Path, new QuantizationOptions { Type = type, DoubleQuant = doubleQuant, ComputeDType = compute, BlockSize = blockSize }, tied == 1);
        using var loaded = HuggingFaceModel.Load(temp.Path);

        var expected = Layers(model);
        var actual = Layers(loaded);
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (name, layer) in expected)
        {
            var other = actual[name];
            Assert.Equal((layer.Type, layer.BlockSize, layer.IsDoubleQuantized, layer.ComputeDType), (other.Type, other.BlockSize, other.IsDoubleQuantized, other.ComputeDType));
            Assert.True(LoraTestKit.BitEqual(layer.PackedWeight, other.PackedWeight), name);
            Assert.True(LoraTestKit.BitEqual(layer.QuantState.Absmax, other.QuantState.Absmax), name);
            Assert.True(LoraTestKit.BitEqual(layer.QuantState.Code, other.QuantState.Code), name);
            Assert.Equal(layer.QuantState.DType, other.QuantState.DType);
            if (doubleQuant)
            {
                Assert.True(LoraTestKit.BitEqual(layer.QuantState.Offset!, other.QuantState.Offset!), name);
                Assert.True(LoraTestKit.BitEqual(layer.QuantState.Nested!.Absmax, other.QuantState.Nested!.Absmax), name);
                Assert.True(LoraTestKit.BitEqual(layer.QuantState.Nested.Code, other.QuantState.Nested.Code), name);
            }
        }

        foreach (var (name, p) in model.named_parameters())
        {
            Assert.True(LoraTestKit.BitEqual(p, loaded.named_parameters().Single(q => q.name == name).parameter), name);
        }

        AssertSameLogits(model, loaded);
        Assert.Equal(model.CountParameters(), loaded.CountParameters());
    }

    [Fact]
    public void A_model_loaded_inside_a_dispose_scope_outlives_it()
    {
        using var temp = new TempDirectory();
        using var model = SavedQuantizedModel(temp.Path);
        CausalLanguageModel loaded;
        using (NewDisposeScope())
        {
            loaded = HuggingFaceModel.Load(temp.Path);
        }

        using (loaded)
        {
            AssertSameLogits(model, loaded);
        }
    }

    [Fact]
    public void Files_use_bitsandbytes_keys_dtypes_and_quant_state_json()
    {
        using var temp = new TempDirectory();
        using var model = SavedQuantizedModel(temp.Path);
        using var reader = new SafetensorsReader(temp.File("model.safetensors"));
        void Expect(string key, ScalarType dtype, params long[] shape)
        {
            var info = reader.GetInfo(key);
            Assert.Equal(dtype, info.ScalarType);
            Assert.Equal(shape, info.Shape.ToArray());
        }

        // q_proj is [32, 32]: 1024 weights → 512 packed bytes, 16 blocks of 64, one nested block.
        Expect(QProj + ".weight", ScalarType.Byte, 512, 1);
        Expect(QProj + ".weight.absmax", ScalarType.Byte, 16);
        Expect(QProj + ".weight.quant_map", ScalarType.Float32, 16);
        Expect(QProj + ".weight.nested_absmax", ScalarType.Float32, 1);
        Expect(QProj + ".weight.nested_quant_map", ScalarType.Float32, 256);
        Expect("model.embed_tokens.weight", ScalarType.Float32, 97, 32);
        Expect("lm_head.weight", ScalarType.Float32, 97, 32);
        Assert.DoesNotContain(reader.TensorNames, n => n.Contains("norm.weight.", StringComparison.Ordinal));

        var state = (Linear4Bit)model.LinearSlots().Single(s => s.FullName == QProj).Module;
        var offset = state.QuantState.Offset!.item<float>();
        using var json = reader.ReadTensor(QProj + ".weight.quant_state.bitsandbytes__nf4");
        Assert.Equal(ScalarType.Byte, json.dtype);
        var text = Encoding.UTF8.GetString(json.data<byte>().ToArray());
        Assert.Equal($"{{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [32, 32], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": {PythonRepr(offset)}}}", text);

        var config = JsonNode.Parse(File.ReadAllText(temp.File("config.json")))!["quantization_config"]!.AsObject();
        Assert.Equal(
            "{\"_load_in_4bit\":true,\"_load_in_8bit\":false,\"bnb_4bit_compute_dtype\":\"bfloat16\",\"bnb_4bit_quant_storage\":\"uint8\",\"bnb_4bit_quant_type\":\"nf4\",\"bnb_4bit_use_double_quant\":true,\"llm_int8_enable_fp32_cpu_offload\":false,\"llm_int8_has_fp16_weight\":false,\"llm_int8_skip_modules\":null,\"llm_int8_threshold\":6.0,\"load_in_4bit\":true,\"load_in_8bit\":false,\"quant_method\":\"bitsandbytes\"}",
            config.ToJsonString());
        Assert.Equal(QuantizationType.NF4, QuantizedModelFiles.ReadQuantizationConfig(temp.Path)!.Type);
    }

    [Fact]
    public void Skipped_projections_are_listed_with_lm_head()
    {
        using var temp = new TempDirectory();
        using var model = SavedQuantizedModel(temp.Path, new QuantizationOptions { SkipModules = ["down_proj"] });
        var options = QuantizedModelFiles.ReadQuantizationConfig(temp.Path)!;
        Assert.Equal(["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"], options.SkipModules);
        using var loaded = HuggingFaceModel.Load(temp.Path);
        Assert.IsType<TorchSharp.Modules.Linear>(loaded.LinearSlots().Single(s => s.FullName == "model.layers.1.mlp.down_proj").Module);
    }

    [Fact]
    public void A_4_bit_folder_loads_without_full_precision_projections_and_keeps_projection_biases()
    {
        // Qwen2 has q/k/v biases: they sit in the 4-bit layers and are read as ordinary 16/32-bit tensors.
        using var temp = new TempDirectory();
        using var model = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2));
        using (no_grad())
        {
            foreach (var (name, parameter) in model.named_parameters().Where(p => p.name.EndsWith("_proj.bias", StringComparison.Ordinal)))
            {
                parameter.normal_(0, 0.5); // HF initialises biases to zero: make them matter
            }
        }

        ModelQuantizer.Quantize(model, new QuantizationOptions { ComputeDType = ScalarType.Float32 });
        HuggingFaceModel.Save(model, temp.Path);

        using var loaded = HuggingFaceModel.Load(temp.Path);
        Assert.DoesNotContain(loaded.parameters(), p => p.is_meta);
        Assert.Equal(3 * model.Config.NumHiddenLayers, Layers(loaded).Values.Count(l => l.Bias is not null));
        AssertSameLogits(model, loaded);
    }

    [Fact]
    public void Projection_placeholders_take_no_memory_and_everything_else_is_real()
    {
        using var model = CausalLanguageModel.CreateWithProjectionPlaceholders(TinyModels.Config(), CPU, ScalarType.Float32);
        var projections = model.LinearSlots().Where(s => s.FullName != "lm_head").ToList();
        Assert.Equal(7 * model.Config.NumHiddenLayers, projections.Count);
        Assert.All(projections, s => Assert.True(((TorchSharp.Modules.Linear)s.Module).weight!.is_meta, s.FullName));
        var real = model.named_parameters().Where(p => !p.parameter.is_meta).Select(p => p.name).ToList();
        Assert.Contains("model.embed_tokens.weight", real);
        Assert.Contains("lm_head.weight", real);
        Assert.Contains("model.norm.weight", real);
        Assert.Equal(2 * model.Config.NumHiddenLayers + 3, real.Count); // two norms per layer, final norm, embeddings, head
    }

    [Fact]
    public void A_folder_written_by_hand_in_the_bitsandbytes_layout_loads()
    {
        using var temp = new TempDirectory();
        using var reference = TinyModels.Create();
        WriteHandMadeFolder(temp.Path, reference, omit: null);

        using var loaded = HuggingFaceModel.Load(temp.Path);
        ModelQuantizer.Quantize(reference, new QuantizationOptions { ComputeDType = ScalarType.Float32 });
        var expected = Layers(reference);
        var actual = Layers(loaded);
        Assert.Equal(expected.Keys, actual.Keys);
        foreach (var (name, layer) in expected)
        {
            Assert.Equal(ScalarType.Float32, actual[name].ComputeDType);
            Assert.True(LoraTestKit.BitEqual(layer.PackedWeight, actual[name].PackedWeight), name);
            using var want = layer.Dequantize();
            using var got = actual[name].Dequantize();
            Assert.True(LoraTestKit.BitEqual(want, got), name);
        }

        AssertSameLogits(reference, loaded);
    }

    [Theory]
    [InlineData(".weight.absmax")]
    [InlineData(".weight.nested_quant_map")]
    [InlineData(".weight")]
    public void A_missing_piece_is_named(string suffix)
    {
        using var temp = new TempDirectory();
        using var reference = TinyModels.Create();
        WriteHandMadeFolder(temp.Path, reference, omit: QProj + suffix);
        var error = Assert.Throws<CheckpointFormatException>(() => HuggingFaceModel.Load(temp.Path));
        Assert.Equal(QProj + suffix, error.TensorName);
        Assert.Contains(QProj + suffix, error.Message);
    }

    [Fact]
    public void A_quant_state_for_another_shape_is_named()
    {
        using var temp = new TempDirectory();
        using var reference = TinyModels.Create();
        WriteHandMadeFolder(temp.Path, reference, omit: null, shapeOverride: "[16, 64]");
        var error = Assert.Throws<CheckpointFormatException>(() => HuggingFaceModel.Load(temp.Path));
        Assert.Equal(QProj + ".weight.quant_state.bitsandbytes__nf4", error.TensorName);
        Assert.Contains("[16, 64]", error.Message);
    }

    [Fact]
    public void An_8_bit_config_is_refused()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        HuggingFaceModel.Save(model, temp.Path);
        var config = JsonNode.Parse(File.ReadAllText(temp.File("config.json")))!.AsObject();
        config["quantization_config"] = new JsonObject { ["quant_method"] = "bitsandbytes", ["load_in_8bit"] = true, ["load_in_4bit"] = false };
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        var error = Assert.Throws<ModelConfigException>(() => HuggingFaceModel.Load(temp.Path));
        Assert.Equal("quantization_config.load_in_8bit", error.Field);
    }

    [Theory]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00001, "1e-05")]
    [InlineData(1.5e-7, "1.5e-07")]
    [InlineData(123.0, "123.0")]
    [InlineData(0.1f, "0.10000000149011612")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234567890123456.0, "1234567890123456.0")]
    [InlineData(-0.0625, "-0.0625")]
    [InlineData(6.02e23, "6.02e+23")]
    public void Floats_are_written_as_python_repr(double value, string expected) => Assert.Equal(expected, PythonJson.Float(value));

    /// <summary>A tiny model, quantized and saved to <paramref name="directory"/>.</summary>
    private static CausalLanguageModel SavedQuantizedModel(string directory, QuantizationOptions? options = null, bool tied = false)
    {
        var model = TinyModels.Create(TinyModels.Config(tied: tied));
        ModelQuantizer.Quantize(model, options);
        HuggingFaceModel.Save(model, directory);
        return model;
    }

    private static void AssertSameLogits(CausalLanguageModel expected, CausalLanguageModel actual)
    {
        using var before = LoraTestKit.Logits(expected);
        using var after = LoraTestKit.Logits(actual);
        Assert.True(LoraTestKit.BitEqual(before, after));
    }

    private static Dictionary<string, Linear4Bit> Layers(CausalLanguageModel model) =>
        model.named_modules().Where(m => m.module is Linear4Bit).ToDictionary(m => m.name, m => (Linear4Bit)m.module);

    private static string PythonRepr(float value) => PythonJson.Float(value);

    /// <summary>
    /// Writes a "-bnb-4bit" folder from the layout in the spec (not through QuantizedModelFiles): NF4 with double
    /// quantization, keys and JSON as Transformers + bitsandbytes write them (the JSON compact and reordered, which
    /// bitsandbytes' from_dict accepts too).
    /// </summary>
    private static void WriteHandMadeFolder(string directory, CausalLanguageModel reference, string? omit, string? shapeOverride = null)
    {
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var projections = reference.LinearSlots().Where(s => s.FullName != "lm_head").Select(s => s.FullName).ToHashSet();
        foreach (var (name, p) in reference.named_parameters())
        {
            var module = name[..name.LastIndexOf('.')];
            if (!projections.Contains(module) || !name.EndsWith(".weight", StringComparison.Ordinal))
            {
                tensors[name] = p;
                continue;
            }

            var q = Blockwise4BitQuantizer.Quantize(p, QuantizationType.NF4, 64, doubleQuant: true);
            var shape = shapeOverride is not null && module == QProj ? shapeOverride : $"[{p.shape[0]},{p.shape[1]}]";
            var offset = q.State.Offset!.item<float>().ToString("R", CultureInfo.InvariantCulture);
            var json = $"{{\"shape\":{shape},\"dtype\":\"float32\",\"blocksize\":64,\"quant_type\":\"nf4\",\"nested_offset\":{offset},\"nested_blocksize\":256,\"nested_dtype\":\"float32\"}}";
            tensors[name] = q.Packed;
            tensors[name + ".absmax"] = q.State.Absmax;
            tensors[name + ".quant_map"] = q.State.Code;
            tensors[name + ".nested_absmax"] = q.State.Nested!.Absmax;
            tensors[name + ".nested_quant_map"] = q.State.Nested.Code;
            tensors[name + ".quant_state.bitsandbytes__nf4"] = tensor(Encoding.UTF8.GetBytes(json));
        }

        if (omit is not null)
        {
            Assert.True(tensors.Remove(omit), omit);
        }

        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors);
        var config = JsonNode.Parse(reference.Config.ToJson())!.AsObject();
        config["quantization_config"] = JsonNode.Parse("""
            {
              "bnb_4bit_compute_dtype": "float32",
              "bnb_4bit_quant_type": "nf4",
              "bnb_4bit_use_double_quant": true,
              "llm_int8_skip_modules": null,
              "load_in_4bit": true,
              "load_in_8bit": false,
              "quant_method": "bitsandbytes"
            }
            """);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
    }
}
