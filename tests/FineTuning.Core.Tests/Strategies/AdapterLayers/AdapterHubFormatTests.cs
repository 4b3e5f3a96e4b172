using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.AdapterLayers;
using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Strategies.AdapterLayers.AdapterLayersTests;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.AdapterLayers;

/// <summary>AdapterHub's adapter folder: the config file both ways, key names, hand-written folders and refused configs.</summary>
public class AdapterHubFormatTests
{
    // What AdapterHub's save_adapter writes for SeqBnConfig() (adapters 1.x: json.dump(indent=2, sort_keys=True)),
    // on a Llama model with hidden size 32, for an adapter named "wordmap".
    private const string SeqBnConfigFile = """
        {
          "config": {
            "adapter_residual_before_ln": false,
            "cross_adapter": false,
            "dropout": 0.0,
            "factorized_phm_W": true,
            "factorized_phm_rule": false,
            "hypercomplex_nonlinearity": "glorot-uniform",
            "init_weights": "bert",
            "inv_adapter": null,
            "inv_adapter_reduction_factor": null,
            "is_parallel": false,
            "learn_phm": true,
            "leave_out": [],
            "ln_after": false,
            "ln_before": false,
            "mh_adapter": false,
            "non_linearity": "relu",
            "original_ln_after": true,
            "original_ln_before": true,
            "output_adapter": true,
            "phm_bias": true,
            "phm_c_init": "normal",
            "phm_dim": 4,
            "phm_init_range": 0.0001,
            "phm_layer": false,
            "phm_rank": 1,
            "reduction_factor": 16,
            "residual_before_ln": true,
            "scaling": 1.0,
            "shared_W_phm": false,
            "shared_phm_rule": true,
            "stochastic_depth": 0.0,
            "use_gating": false
          },
          "hidden_size": 32,
          "model_class": "LlamaForCausalLM",
          "model_name": "tiny-llama",
          "model_type": "llama",
          "name": "wordmap",
          "version": "adapters.1.1.0"
        }
        """;

    [Fact]
    public void The_saved_config_is_laid_out_as_AdapterHub_writes_it()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var options = new AdapterLayersOptions { Init = AdapterInit.Bert, BaseModelNameOrPath = "tiny-llama" };
        Apply(model, options, "wordmap").Save(temp.Path);
        var expected = SeqBnConfigFile.Replace("adapters.1.1.0", AdapterHubFiles.Version, StringComparison.Ordinal)
            .Replace("\"init_weights\": \"bert\",", "\"init_weights\": \"bert\",\n    \"init_weights_seed\": null,", StringComparison.Ordinal);
        Assert.Equal(expected, File.ReadAllText(temp.File(AdapterHubFiles.ConfigFileName)));

        using var reader = new SafetensorsReader(temp.File(AdapterHubFiles.WeightsFileName));
        Assert.Equal(
            new[] { 0, 1 }.SelectMany(i => new[] { "adapter_down.0.weight", "adapter_down.0.bias", "adapter_up.weight", "adapter_up.bias" }.Select(s => $"model.layers.{i}.output_adapters.adapters.wordmap.{s}")).Order(StringComparer.Ordinal),
            reader.TensorNames.Order(StringComparer.Ordinal));
        Assert.Equal([2L, 32L], reader.GetInfo("model.layers.0.output_adapters.adapters.wordmap.adapter_down.0.weight").Shape);
        Assert.Equal([32L, 2L], reader.GetInfo("model.layers.1.output_adapters.adapters.wordmap.adapter_up.weight").Shape);
        Assert.True(AdapterHubFiles.IsAdapterHubFolder(temp.Path));
    }

    [Fact]
    public void A_hand_written_AdapterHub_folder_loads_with_its_weights_where_AdapterHub_puts_them()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File(AdapterHubFiles.ConfigFileName), SeqBnConfigFile);
        var generator = new Generator(11);
        var tensors = new Dictionary<string, Tensor>();
        foreach (var i in new[] { 0, 1 })
        {
            var prefix = $"model.layers.{i}.output_adapters.adapters.wordmap.";
            tensors[prefix + "adapter_down.0.weight"] = randn([2, 32], generator: generator);
            tensors[prefix + "adapter_down.0.bias"] = randn([2], generator: generator);
            tensors[prefix + "adapter_up.weight"] = randn([32, 2], generator: generator);
            tensors[prefix + "adapter_up.bias"] = randn([32], generator: generator);
        }

        SafetensorsWriter.Write(temp.File(AdapterHubFiles.WeightsFileName), tensors);
        using var model = TinyModels.Create();
        using var before = Logits(model);
        var strategy = Assert.IsType<AdapterLayersStrategy>(AdapterLoader.Load(temp.Path, model));

        // seq_bn: after the MLP, relu, rf 16 → d 2, the adapter input includes the residual stream (original_ln_before).
        Assert.Equal("wordmap", strategy.AdapterName);
        Assert.Equal(AdapterPlacement.Pfeiffer, strategy.Options.Placement);
        Assert.Equal(AdapterNonLinearity.Relu, strategy.Options.EffectiveNonLinearity);
        Assert.True(strategy.Layers.All(l => l.OriginalLnBefore && l.ResidualBeforeLn));
        Assert.Equal("tiny-llama", strategy.Options.BaseModelNameOrPath);
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (key, value) in tensors)
        {
            var name = key.Replace(".output_adapters.", ".mlp_adapter.", StringComparison.Ordinal);
            Assert.True(BitEqual(value, parameters[name]), key);
        }

        using var after = Logits(model);
        Assert.False(BitEqual(before, after));
    }

    [Fact]
    public void A_named_config_and_a_renamed_adapter_load()
    {
        using var temp = new TempDirectory();
        using (var source = TinyModels.Create())
        {
            var strategy = Apply(source, new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby }, "task");
            Randomize(strategy);
            strategy.Save(temp.Path);
        }

        // AdapterHub accepts a config id in place of the dict ("double_seq_bn" = Houlsby, swish, original_ln_before false).
        var path = temp.File(AdapterHubFiles.ConfigFileName);
        using (var document = JsonDocument.Parse(File.ReadAllText(path)))
        {
            var fields = document.RootElement.EnumerateObject().Where(p => p.Name != "config").ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
            fields["config"] = "double_seq_bn";
            File.WriteAllText(path, JsonSerializer.Serialize(fields));
        }

        using var model = TinyModels.Create();
        var loaded = AdapterLayersStrategy.FromPretrained(temp.Path, model);
        Assert.Equal(AdapterPlacement.Houlsby, loaded.Options.Placement);

        // Loading into adapters of another name maps the keys (AdapterHub's load_as).
        using var other = TinyModels.Create();
        var renamed = Apply(other, new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby }, "mine");
        renamed.Load(temp.Path);
        using var expected = Logits(model);
        using var actual = Logits(other);
        Assert.True(BitEqual(expected, actual));
    }

    [Theory]
    [InlineData("is_parallel", "true", "parallel")]
    [InlineData("use_gating", "true", "gat")]
    [InlineData("ln_after", "true", "layer norm")]
    [InlineData("ln_before", "true", "layer norm")]
    [InlineData("phm_layer", "true", "PHM")]
    [InlineData("original_ln_after", "false", "residual")]
    [InlineData("scaling", "\"learned\"", "learned")]
    [InlineData("residual_before_ln", "\"post_add\"", "post_add")]
    [InlineData("reduction_factor", "{\"0\": 8, \"default\": 16}", "per-layer")]
    [InlineData("non_linearity", "\"gelu_new\"", "gelu_new")]
    [InlineData("inv_adapter", "\"nice\"", "invertible")]
    [InlineData("stochastic_depth", "0.1", "stochastic")]
    [InlineData("output_adapter", "false", "after the MLP")]
    [InlineData("architecture", "\"lora\"", "bottleneck")]
    [InlineData("some_new_field", "3", "refusing")]
    public void Configs_this_library_cannot_reproduce_are_refused_naming_the_field(string field, string value, string reason)
    {
        using var temp = new TempDirectory();
        var existing = SeqBnConfigFile.Split('\n').FirstOrDefault(l => l.TrimStart().StartsWith($"\"{field}\": ", StringComparison.Ordinal));
        var config = existing is null
            ? SeqBnConfigFile.Replace("\"config\": {", $"\"config\": {{\n    \"{field}\": {value},", StringComparison.Ordinal)
            : SeqBnConfigFile.Replace(existing, $"    \"{field}\": {value}{(existing.EndsWith(',') ? "," : "")}", StringComparison.Ordinal);
        File.WriteAllText(temp.File(AdapterHubFiles.ConfigFileName), config);
        using var model = TinyModels.Create();
        var names = model.named_parameters().Select(p => p.name).ToList();
        var e = Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(temp.Path, model));
        Assert.Contains(field == "output_adapter" ? "config.mh_adapter" : $"config.{field}", e.Message, StringComparison.Ordinal);
        Assert.Contains(reason, e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(names, model.named_parameters().Select(p => p.name)); // nothing was inserted
    }

    [Fact]
    public void Gelu_in_a_config_without_a_version_is_AdapterHubs_old_gelu_new_and_refused()
    {
        using var temp = new TempDirectory();
        var config = SeqBnConfigFile.Replace("\"relu\"", "\"gelu\"", StringComparison.Ordinal).Replace(",\n  \"version\": \"adapters.1.1.0\"", "", StringComparison.Ordinal);
        File.WriteAllText(temp.File(AdapterHubFiles.ConfigFileName), config);
        using var model = TinyModels.Create();
        var e = Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(temp.Path, model));
        Assert.Contains("gelu_new", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Loading_a_folder_whose_config_differs_from_the_applied_adapters_names_the_field()
    {
        using var temp = new TempDirectory();
        using (var source = TinyModels.Create())
        {
            Apply(source, new AdapterLayersOptions { NonLinearity = AdapterNonLinearity.Gelu }, "default").Save(temp.Path);
        }

        using var model = TinyModels.Create();
        var strategy = Apply(model, AdapterLayersOptions.Default, "default");
        var e = Assert.Throws<CheckpointFormatException>(() => strategy.Load(temp.Path));
        Assert.Contains("non_linearity", e.Message, StringComparison.Ordinal);

        File.Delete(temp.File(AdapterHubFiles.WeightsFileName));
        using var fresh = TinyModels.Create();
        Assert.Throws<FileNotFoundException>(() => AdapterLoader.Load(temp.Path, fresh));
        Assert.DoesNotContain(fresh.named_parameters(), p => p.name.Contains("adapter", StringComparison.Ordinal)); // removed again
    }

    [Fact]
    public void A_PEFT_folder_is_not_taken_for_an_AdapterHub_one()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var lora = new LoraStrategy();
        lora.Apply(model, StrategyContext.Empty);
        lora.Save(temp.Path);
        Assert.False(AdapterHubFiles.IsAdapterHubFolder(temp.Path));
        using var fresh = TinyModels.Create();
        Assert.IsType<LoraStrategy>(AdapterLoader.Load(temp.Path, fresh));
    }
}
