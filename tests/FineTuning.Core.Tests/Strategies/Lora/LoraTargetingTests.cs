using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Lora;

/// <summary>Which modules get LoRA, patterns, bias modes, modules_to_save and option errors.</summary>
public class LoraTargetingTests
{
    private static IReadOnlyList<string> Targets(LoraOptions options, ModelConfig? config = null)
    {
        using var model = TinyModels.Create(config);
        return Apply(model, options).TargetedModules("default");
    }

    [Fact]
    public void A_list_entry_matches_a_full_name_or_a_dot_suffix()
    {
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"], Targets(new LoraOptions { TargetModules = new[] { "q_proj" } }));
        Assert.Equal(["model.layers.1.mlp.down_proj"], Targets(new LoraOptions { TargetModules = new[] { "model.layers.1.mlp.down_proj" } }));
        Assert.Equal(["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj"], Targets(new LoraOptions { TargetModules = new[] { "mlp.up_proj" } }));
        // "proj" is not a dot-suffix of "q_proj".
        Assert.Throws<InvalidOptionException>(() => Targets(new LoraOptions { TargetModules = new[] { "proj" } }));
    }

    [Fact]
    public void A_string_is_a_regex_that_must_match_the_whole_name()
    {
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj"], Targets(new LoraOptions { TargetModules = ".*q_proj" }));
        Assert.Equal(["model.layers.1.self_attn.k_proj", "model.layers.1.self_attn.v_proj"], Targets(new LoraOptions { TargetModules = @"model\.layers\.1\..*\.(k|v)_proj" }));
        var error = Assert.Throws<InvalidOptionException>(() => Targets(new LoraOptions { TargetModules = "q_proj" }));
        Assert.Equal("LoraOptions.TargetModules", error.Option);
        Assert.All(new[] { "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head" }, name => Assert.Contains(name, error.Message, StringComparison.Ordinal));
        Assert.Contains("model.layers.0.self_attn.q_proj", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void All_linear_takes_every_projection_but_not_lm_head()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { TargetModules = "ALL-LINEAR" });
        var targets = strategy.TargetedModules("default");
        Assert.Equal(14, targets.Count);
        Assert.DoesNotContain("lm_head", targets);
        Assert.Equal(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], strategy.GetAdapterOptions("default").TargetModules!.Names);
    }

    [Fact]
    public void Default_targets_are_q_and_v_for_every_family()
    {
        foreach (var family in Enum.GetValues<ModelFamily>())
        {
            Assert.Equal(
                ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
                Targets(LoraOptions.Default, TinyModels.Config(family)));
        }
    }

    [Fact]
    public void Layers_to_transform_and_exclude_modules_narrow_the_selection()
    {
        Assert.Equal(["model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"], Targets(new LoraOptions { LayersToTransform = [1] }));
        // An exact full name is not subject to layers_to_transform (PEFT's rule).
        Assert.Equal(["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            Targets(new LoraOptions { TargetModules = new[] { "model.layers.0.self_attn.q_proj", "v_proj" }, LayersToTransform = [1] }));
        var excluded = Targets(new LoraOptions { TargetModules = LoraTargetModules.AllLinear, ExcludeModules = new[] { "v_proj", "model.layers.0.mlp.down_proj" } });
        Assert.Equal(11, excluded.Count);
        Assert.DoesNotContain(excluded, t => t.EndsWith("v_proj", StringComparison.Ordinal) || t == "model.layers.0.mlp.down_proj");
        Assert.Equal(12, Targets(new LoraOptions { TargetModules = LoraTargetModules.AllLinear, ExcludeModules = @".*\.mlp\.gate_proj" }).Count);
    }

    [Theory]
    [InlineData("R")]
    [InlineData("Alpha")]
    [InlineData("Dropout")]
    [InlineData("LayersToTransform")]
    [InlineData("LayersToTransformRange")]
    [InlineData("RankPattern")]
    [InlineData("PissaNiter")]
    [InlineData("AdapterDType")]
    [InlineData("ModulesToSave")]
    [InlineData("ModulesToSaveEmbedding")]
    [InlineData("ExcludeModules")]
    public void Invalid_options_name_the_option(string what)
    {
        var (options, option) = what switch
        {
            "R" => (new LoraOptions { R = 0 }, "LoraOptions.R"),
            "Alpha" => (new LoraOptions { Alpha = double.NaN }, "LoraOptions.Alpha"),
            "Dropout" => (new LoraOptions { Dropout = 1 }, "LoraOptions.Dropout"),
            "LayersToTransform" => (new LoraOptions { TargetModules = ".*q_proj", LayersToTransform = [0] }, "LoraOptions.LayersToTransform"),
            "LayersToTransformRange" => (new LoraOptions { LayersToTransform = [2] }, "LoraOptions.LayersToTransform"),
            "RankPattern" => (new LoraOptions { RankPattern = new Dictionary<string, int> { ["q_proj"] = -1 } }, "LoraOptions.RankPattern"),
            "PissaNiter" => (new LoraOptions { PissaNiter = 2 }, "LoraOptions.PissaNiter"),
            "AdapterDType" => (new LoraOptions { AdapterDType = ScalarType.Int32 }, "LoraOptions.AdapterDType"),
            "ModulesToSave" => (new LoraOptions { ModulesToSave = ["classifier"] }, "LoraOptions.ModulesToSave"),
            "ModulesToSaveEmbedding" => (new LoraOptions { ModulesToSave = ["embed_tokens"] }, "LoraOptions.ModulesToSave"),
            _ => (new LoraOptions { ExcludeModules = LoraTargetModules.AllLinear }, "LoraOptions.ExcludeModules"),
        };
        using var model = TinyModels.Create();
        var before = Snapshot(model);
        var error = Assert.Throws<InvalidOptionException>(() => Apply(model, options));
        Assert.Equal(option, error.Option);
        Assert.Equal(before.Keys.Order(), model.named_parameters().Select(p => p.name).Order()); // model untouched
    }

    [Fact]
    public void Rank_and_alpha_patterns_apply_per_module_and_the_first_matching_key_wins()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions
        {
            TargetModules = LoraTargetModules.AllLinear,
            RankPattern = new Dictionary<string, int> { ["q_proj"] = 4, [".*_proj"] = 2, ["k_proj"] = 16 },
            AlphaPattern = new Dictionary<string, double> { [@"layers\.1\.self_attn\.v_proj"] = 32 },
        });
        var layers = strategy.LoraLayers;
        Assert.Equal(4, layers["model.layers.0.self_attn.q_proj"].GetConfig("default").R);
        Assert.Equal(2, layers["model.layers.0.self_attn.k_proj"].GetConfig("default").R); // ".*_proj" comes first
        Assert.Equal(2, layers["model.layers.1.mlp.down_proj"].GetConfig("default").R);
        Assert.Equal(new long[] { 4, 32 }, layers["model.layers.0.self_attn.q_proj"].LoraA("default").weight!.shape);
        Assert.Equal(32.0, layers["model.layers.1.self_attn.v_proj"].GetConfig("default").Alpha);
        Assert.Equal(16.0, layers["model.layers.1.self_attn.v_proj"].GetConfig("default").Scaling);
        Assert.Equal(8.0, layers["model.layers.0.self_attn.v_proj"].GetConfig("default").Alpha);
        // "proj" alone does not match "q_proj": the key must follow a dot or start the name.
        Assert.Null(LoraOptions.PatternKey(["proj"], "model.layers.0.self_attn.q_proj"));
    }

    [Fact]
    public void Bias_all_trains_every_bias_and_lora_only_those_of_wrapped_layers()
    {
        var qwen = TinyModels.Config(ModelFamily.Qwen2); // q, k and v carry biases
        using (var model = TinyModels.Create(qwen))
        {
            var strategy = Apply(model, new LoraOptions { Bias = LoraBias.All });
            var biases = strategy.TrainableParameters().Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal)).Select(p => p.Name).ToList();
            Assert.Equal(6, biases.Count);
            Assert.Contains("model.layers.0.self_attn.k_proj.bias", biases);
            Assert.Contains("model.layers.0.self_attn.q_proj.base_layer.bias", biases);
            Assert.Contains("base_model.model.model.layers.1.self_attn.k_proj.bias", strategy.AdapterStateDict("default").Keys);
        }

        using (var model = TinyModels.Create(qwen))
        {
            var strategy = Apply(model, new LoraOptions { Bias = LoraBias.LoraOnly });
            var biases = strategy.TrainableParameters().Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal)).Select(p => p.Name).Order().ToList();
            Assert.Equal(
                ["model.layers.0.self_attn.q_proj.base_layer.bias", "model.layers.0.self_attn.v_proj.base_layer.bias", "model.layers.1.self_attn.q_proj.base_layer.bias", "model.layers.1.self_attn.v_proj.base_layer.bias"],
                biases);
            Assert.Contains("base_model.model.model.layers.0.self_attn.v_proj.base_layer.bias", strategy.AdapterStateDict("default").Keys);
            Assert.Equal(12, strategy.AdapterStateDict("default").Count);
            var error = Assert.Throws<InvalidOptionException>(() => strategy.AddAdapter("other", new LoraOptions { Bias = LoraBias.All }));
            Assert.Equal("LoraOptions.Bias", error.Option);
        }

        using (var model = TinyModels.Create(qwen))
        {
            var strategy = Apply(model);
            Assert.DoesNotContain(strategy.TrainableParameters(), p => p.Name.EndsWith(".bias", StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Modules_to_save_trains_a_full_copy_saved_under_the_original_name(bool tied)
    {
        using var model = TinyModels.Create(TinyModels.Config(tied: tied));
        using var baseLogits = Logits(model);
        var strategy = Apply(model, new LoraOptions { ModulesToSave = ["lm_head"] });
        var names = strategy.TrainableParameters().Select(p => p.Name).ToList();
        Assert.Contains("lm_head.modules_to_save.default.weight", names);
        Assert.DoesNotContain("lm_head.original_module.weight", names);
        Assert.Contains("base_model.model.lm_head.weight", strategy.AdapterStateDict("default").Keys);
        var lora = 2 * ((8 * (32 + 32)) + (8 * (32 + 16))); // per layer q_proj 32→32, v_proj 32→16, r = 8
        Assert.Equal(lora + (97 * 32), model.CountParameters().Trainable);

        var copy = (TorchSharp.Modules.Linear)strategy.SavedModules["lm_head"].GetCopy("default")!;
        using (no_grad())
        {
            copy.weight!.mul_(2);
        }

        using var changed = Logits(model);
        Assert.True(MaxDiff(changed, baseLogits) > 1e-2);
        using (strategy.DisableAdapters())
        {
            using var disabled = Logits(model);
            Assert.True(BitEqual(disabled, baseLogits));
        }

        if (tied)
        {
            // A trained copy cannot stand in for a head tied to the embeddings.
            Assert.Throws<InvalidOperationException>(strategy.MergeAndUnload);
            strategy.Remove();
            Assert.IsType<TiedLinear>(model.LmHead);
            return;
        }

        strategy.MergeAndUnload();
        Assert.IsType<TorchSharp.Modules.Linear>(model.LmHead);
        using var unloaded = Logits(model);
        Assert.True(MaxDiff(unloaded, changed) < 1e-5);
    }
}
