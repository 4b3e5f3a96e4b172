using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Lora;

/// <summary>PEFT adapter folders both ways, load errors, and export of a merged model.</summary>
public class PeftAdapterFormatTests
{
    /// <summary>What PEFT writes for <c>LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, task_type="CAUSAL_LM")</c> on a Llama (minus peft_version).</summary>
    private const string ExpectedConfig = """
        {
          "alora_invocation_tokens": null,
          "alpha_pattern": {},
          "arrow_config": null,
          "auto_mapping": null,
          "base_model_name_or_path": "meta-llama/Llama-3.2-1B",
          "bias": "none",
          "corda_config": null,
          "ensure_weight_tying": false,
          "eva_config": null,
          "exclude_modules": null,
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "kasa_config": null,
          "layer_replication": null,
          "layers_pattern": null,
          "layers_to_transform": null,
          "loftq_config": {},
          "lora_alpha": 16,
          "lora_bias": false,
          "lora_dropout": 0.05,
          "lora_ga_config": null,
          "megatron_config": null,
          "megatron_core": "megatron.core",
          "modules_to_save": null,
          "monteclora_config": null,
          "peft_type": "LORA",
          "qalora_group_size": 16,
          "r": 8,
          "rank_pattern": {},
          "revision": null,
          "target_modules": [
            "q_proj",
            "v_proj"
          ],
          "target_parameters": null,
          "task_type": "CAUSAL_LM",
          "trainable_token_indices": null,
          "use_bdlora": null,
          "use_dora": false,
          "use_qalora": false,
          "use_rslora": false,
          "velora_config": null
        }
        """;

    [Fact]
    public void Save_writes_PEFTs_config_text_and_keys()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create(dtype: ScalarType.BFloat16);
        var strategy = Apply(model, new LoraOptions { Alpha = 16, Dropout = 0.05, BaseModelNameOrPath = "meta-llama/Llama-3.2-1B" });
        strategy.AddAdapter("other", new LoraOptions { TargetModules = LoraTargetModules.AllLinear, UseDora = true });
        strategy.Save(temp.Path);

        Assert.Equal(ExpectedConfig.ReplaceLineEndings("\n"), File.ReadAllText(temp.File(LoraAdapterConfig.FileName)));
        using var reader = new SafetensorsReader(temp.File(PeftAdapterFiles.WeightsFileName));
        Assert.Equal("pt", reader.Metadata["format"]);
        Assert.Equal(
            new[] { 0, 1 }.SelectMany(i => new[] { "q_proj", "v_proj" }.SelectMany(m => new[] { "A", "B" }.Select(ab => $"base_model.model.model.layers.{i}.self_attn.{m}.lora_{ab}.weight"))).Order(),
            reader.TensorNames.Order());
        Assert.All(reader.Tensors.Values, t => Assert.Equal("F32", t.DType));
        Assert.Equal([8L, 32L], reader.Tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].Shape);

        var otherDir = Path.Combine(temp.Path, "other");
        using var other = new SafetensorsReader(Path.Combine(otherDir, PeftAdapterFiles.WeightsFileName));
        Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector", other.TensorNames);
        Assert.Equal([32L], other.Tensors["base_model.model.model.layers.1.mlp.down_proj.lora_magnitude_vector"].Shape);
        Assert.Equal(14 * 3, other.TensorNames.Count);
        var otherConfig = File.ReadAllText(Path.Combine(otherDir, LoraAdapterConfig.FileName));
        Assert.Contains("\"use_dora\": true", otherConfig, StringComparison.Ordinal);
        Assert.Contains("    \"down_proj\",\n    \"gate_proj\",", otherConfig, StringComparison.Ordinal);
    }

    [Fact]
    public void Config_options_survive_a_write_and_read()
    {
        var options = new LoraOptions
        {
            R = 16,
            Alpha = 2.5,
            Dropout = 1e-5,
            TargetModules = @".*\.(q|v)_proj",
            ExcludeModules = new[] { "model.layers.0.self_attn.q_proj" },
            RankPattern = new Dictionary<string, int> { ["v_proj"] = 4 },
            AlphaPattern = new Dictionary<string, double> { ["v_proj"] = 32, ["q_proj"] = 0.5 },
            Bias = LoraBias.LoraOnly,
            ModulesToSave = ["lm_head"],
            UseRsLora = true,
            UseDora = true,
            Init = LoraInit.Pissa,
            PissaNiter = 4,
            BaseModelNameOrPath = "Ünïcode/model",
        };
        var json = LoraAdapterConfig.ToJson(options);
        Assert.Contains("\"lora_alpha\": 2.5", json, StringComparison.Ordinal);
        Assert.Contains("\"lora_dropout\": 1e-05", json, StringComparison.Ordinal);
        Assert.Contains("\"init_lora_weights\": \"pissa_niter_4\"", json, StringComparison.Ordinal);
        Assert.Contains("\"target_modules\": \".*\\\\.(q|v)_proj\"", json, StringComparison.Ordinal);
        Assert.Contains("\\u00dcn\\u00efcode", json, StringComparison.Ordinal);
        Assert.Contains("\"alpha_pattern\": {\n    \"q_proj\": 0.5,\n    \"v_proj\": 32\n  }", json, StringComparison.Ordinal);
        var read = LoraAdapterConfig.Parse(json);
        Assert.Equal(options with
        {
            TargetModules = read.TargetModules,
            ExcludeModules = read.ExcludeModules,
            RankPattern = read.RankPattern,
            AlphaPattern = read.AlphaPattern,
            ModulesToSave = read.ModulesToSave,
        }, read);
        Assert.Equal(options.TargetModules!.Pattern, read.TargetModules!.Pattern);
        Assert.Equal(options.ExcludeModules!.Names, read.ExcludeModules!.Names);
        Assert.Equal(options.RankPattern, read.RankPattern);
        Assert.Equal(options.AlphaPattern.OrderBy(p => p.Key), read.AlphaPattern.OrderBy(p => p.Key));
        Assert.Equal(options.ModulesToSave, read.ModulesToSave);
        Assert.Equal(LoraInit.Random, LoraAdapterConfig.Parse("""{"init_lora_weights": false, "target_modules": "all-linear"}""").Init);
        Assert.True(LoraAdapterConfig.Parse("""{"target_modules": "all-linear"}""").TargetModules!.IsAllLinear);
    }

    [Fact]
    public void Save_then_FromPretrained_is_bit_exact()
    {
        using var temp = new TempDirectory();
        using var trained = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2));
        var strategy = Apply(trained, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, UseDora = true, Bias = LoraBias.LoraOnly, ModulesToSave = ["lm_head"] });
        strategy.AddAdapter("other", new LoraOptions { RankPattern = new Dictionary<string, int> { ["q_proj"] = 3 }, TargetModules = new[] { "q_proj", "k_proj" } });
        Randomize(strategy);
        Randomize(strategy, "other", seed: 99);
        using (no_grad())
        {
            foreach (var p in strategy.TrainableParameters().Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal) || p.Name.Contains("modules_to_save", StringComparison.Ordinal)))
            {
                p.Parameter.add_(0.01);
            }
        }

        strategy.SetActiveAdapters("default", "other");
        using var expected = Logits(trained);
        strategy.Save(temp.Path);

        using var fresh = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2));
        var loaded = LoraStrategy.FromPretrained(temp.Path, fresh);
        Assert.True(loaded.InferenceMode);
        Assert.Empty(loaded.TrainableParameters());
        loaded.LoadAdapter(Path.Combine(temp.Path, "other"), "other");
        loaded.SetActiveAdapters("default", "other");
        foreach (var adapter in new[] { "default", "other" })
        {
            var want = strategy.AdapterStateDict(adapter);
            var got = loaded.AdapterStateDict(adapter);
            Assert.Equal(want.Keys.Order(), got.Keys.Order());
            Assert.All(want, p => Assert.True(BitEqual(p.Value, got[p.Key]), p.Key));
        }

        using var actual = Logits(fresh);
        Assert.True(BitEqual(expected, actual));

        using var trainable = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2));
        var resumed = LoraStrategy.FromPretrained(temp.Path, trainable, isTrainable: true);
        Assert.Contains(resumed.TrainableParameters(), p => p.Name == "model.layers.0.self_attn.q_proj.lora_magnitude_vector.default.weight");
        Assert.Contains(resumed.TrainableParameters(), p => p.Name == "lm_head.modules_to_save.default.weight");

        strategy.Load(temp.Path); // a strategy reloads its own folder (all adapters)
    }

    [Fact]
    public void A_hand_written_PEFT_folder_gives_W_x_plus_scaling_B_A_x_and_warns_about_unknown_keys()
    {
        using var temp = new TempDirectory();
        var generator = new Generator(17);
        var a = new[] { randn([2, 32], generator: generator), randn([2, 32], generator: generator) };
        var b = new[] { randn([32, 2], generator: generator), randn([32, 2], generator: generator) };
        WriteFolder(temp.Path, Config(), Tensors(a, b));

        var logger = new ListLogger();
        using var model = TinyModels.Create();
        var strategy = LoraStrategy.FromPretrained(temp.Path, model, logger: logger);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("'future_field'", StringComparison.Ordinal));
        Assert.DoesNotContain(logger.Entries, e => e.Message.Contains("peft_version", StringComparison.Ordinal));
        Assert.Equal(2, strategy.LoraLayers.Count);

        // One layer by hand: scaling = lora_alpha / r = 4 / 2.
        var layer = strategy.LoraLayers["model.layers.1.self_attn.q_proj"];
        using var x = randn(3, 32);
        using var y = layer.call(x);
        using var byHand = x.matmul(layer.BaseWeight.t()) + (2.0 * x.matmul(a[1].t()).matmul(b[1].t()));
        Assert.True(MaxDiff(y, byHand) < 1e-5);

        // The whole model: the same as a base model whose q_proj weights got W + 2·B·A by hand.
        using var reference = TinyModels.Create();
        using (no_grad())
        {
            var weights = reference.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            for (var i = 0; i < 2; i++)
            {
                weights[$"model.layers.{i}.self_attn.q_proj.weight"].add_(2.0 * b[i].matmul(a[i]));
            }
        }

        using var expected = Logits(reference);
        using var actual = Logits(model);
        Assert.True(MaxDiff(expected, actual) < 1e-5, $"max diff {MaxDiff(expected, actual)}");
    }

    [Theory]
    [InlineData("shape")]
    [InlineData("module")]
    [InlineData("missing")]
    [InlineData("untargeted")]
    public void Load_errors_name_the_tensor_and_leave_the_model_untouched(string problem)
    {
        using var temp = new TempDirectory();
        var a = new[] { zeros(2, 32), zeros(2, 32) };
        var b = new[] { zeros(32, 2), zeros(32, 2) };
        var tensors = Tensors(a, b);
        const string prefix = "base_model.model.model.layers.";
        switch (problem)
        {
            case "shape":
                tensors[prefix + "0.self_attn.q_proj.lora_A.weight"] = zeros(2, 31);
                break;
            case "module":
                tensors[prefix + "5.self_attn.q_proj.lora_A.weight"] = zeros(2, 32);
                break;
            case "missing":
                tensors.Remove(prefix + "1.self_attn.q_proj.lora_B.weight");
                break;
            default:
                tensors[prefix + "0.self_attn.k_proj.lora_A.weight"] = zeros(2, 32);
                break;
        }

        WriteFolder(temp.Path, Config(), tensors);
        using var model = TinyModels.Create();
        var names = model.named_parameters().Select(p => p.name).ToList();
        var error = Assert.Throws<CheckpointFormatException>(() => LoraStrategy.FromPretrained(temp.Path, model));
        var expected = problem switch
        {
            "shape" => new[] { prefix + "0.self_attn.q_proj.lora_A.weight", "[2, 31]", "[2, 32]" },
            "module" => ["model.layers.5.self_attn.q_proj", "different base model"],
            "missing" => [prefix + "1.self_attn.q_proj.lora_B.weight", "[32, 2]"],
            _ => ["model.layers.0.self_attn.k_proj", "does not select it"],
        };
        Assert.All(expected, text => Assert.Contains(text, error.Message, StringComparison.Ordinal));
        Assert.Equal(names, model.named_parameters().Select(p => p.name));
        Assert.All(model.LinearSlots(), s => Assert.IsNotType<LoraLinear>(s.Module));
    }

    [Theory]
    [InlineData("\"fan_in_fan_out\": true", typeof(NotSupportedException), "fan_in_fan_out")]
    [InlineData("\"peft_type\": \"PREFIX_TUNING\"", typeof(NotSupportedException), "PREFIX_TUNING")]
    [InlineData("\"init_lora_weights\": \"loftq\"", typeof(NotSupportedException), "loftq")]
    [InlineData("\"r\": 2.5", typeof(CheckpointFormatException), "r must be an integer")]
    [InlineData("\"bias\": \"some\"", typeof(CheckpointFormatException), "bias")]
    [InlineData("\"r\": 0", typeof(CheckpointFormatException), "LoraOptions.R")]
    public void Unsupported_or_malformed_configs_are_refused(string field, Type exception, string mentioned)
    {
        var json = $$"""{"target_modules": ["q_proj"], {{field}}}""";
        var error = Assert.Throws(exception, () => LoraAdapterConfig.Parse(json, "adapter_config.json"));
        Assert.Contains(mentioned, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_merged_and_unloaded_model_saves_as_a_plain_Hugging_Face_folder()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, UseDora = true });
        Randomize(strategy);
        using var adapted = Logits(model);
        strategy.MergeAndUnload();
        Assert.Null(strategy.Model);
        Assert.All(model.named_parameters(), p => Assert.True(p.parameter.requires_grad));
        HuggingFaceModel.Save(model, temp.Path);

        using var reader = new SafetensorsReader(temp.File("model.safetensors"));
        Assert.DoesNotContain(reader.TensorNames, n => n.Contains("lora", StringComparison.Ordinal) || n.Contains("base_layer", StringComparison.Ordinal));
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", reader.TensorNames);
        using var reloaded = HuggingFaceModel.Load(temp.Path);
        using var actual = Logits(reloaded);
        Assert.True(MaxDiff(adapted, actual) < 1e-5, $"max diff {MaxDiff(adapted, actual)}");
    }

    private static string Config(string extra = "") => $$"""
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": "tiny",
          "bias": "none",
          "corda_config": null,
          "eva_config": null,
          "exclude_modules": null,
          "fan_in_fan_out": false,
          "future_field": {"anything": [1, 2]},
          "inference_mode": true,
          "init_lora_weights": true,
          "layer_replication": null,
          "layers_pattern": null,
          "layers_to_transform": null,
          "loftq_config": {},
          "lora_alpha": 4,
          "lora_bias": false,
          "lora_dropout": 0.1,
          "megatron_config": null,
          "megatron_core": "megatron.core",
          "modules_to_save": null,
          "peft_type": "LORA",
          "peft_version": "0.17.1",
          "r": 2,
          "rank_pattern": {},
          "revision": null,
          "target_modules": [
            "q_proj"
          ],
          "task_type": "CAUSAL_LM",
          "use_dora": false,
          "use_rslora": false{{extra}}
        }
        """;

    private static Dictionary<string, Tensor> Tensors(Tensor[] a, Tensor[] b)
    {
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        for (var i = 0; i < a.Length; i++)
        {
            tensors[$"base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight"] = a[i];
            tensors[$"base_model.model.model.layers.{i}.self_attn.q_proj.lora_B.weight"] = b[i];
        }

        return tensors;
    }

    private static void WriteFolder(string directory, string config, Dictionary<string, Tensor> tensors)
    {
        File.WriteAllText(Path.Combine(directory, "adapter_config.json"), config);
        SafetensorsWriter.Write(Path.Combine(directory, "adapter_model.safetensors"), tensors);
    }
}
