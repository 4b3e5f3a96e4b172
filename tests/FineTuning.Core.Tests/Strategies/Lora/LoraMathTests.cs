using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Models;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Lora;

/// <summary>Parameter counts, the forward pass, merging, DoRA and the inits.</summary>
public class LoraMathTests
{
    [Theory]
    [InlineData(PublishedConfigs.Llama2_7B, 8, new[] { "q_proj", "v_proj" }, "trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622")]
    [InlineData(PublishedConfigs.Llama32_1B, 8, new[] { "q_proj" }, "trainable params: 524,288 || all params: 1,236,338,688 || trainable%: 0.0424")]
    [InlineData(PublishedConfigs.Qwen25_3B, 16, null, "trainable params: 3,686,400 || all params: 3,089,625,088 || trainable%: 0.1193")]
    public void Published_PEFT_counts_on_the_meta_device(string json, int r, string[]? targets, string expected)
    {
        using var model = CausalLanguageModel.Create(ModelConfig.Parse(json), META, ScalarType.BFloat16);
        var strategy = Apply(model, new LoraOptions { R = r, Alpha = 2 * r, TargetModules = targets is null ? null : LoraTargetModules.FromNames(targets) });
        Assert.Equal(expected, model.CountParameters().ToPeftLine());
        Assert.All(strategy.TrainableParameters(), p => Assert.Contains(".lora_", p.Name, StringComparison.Ordinal));
        Assert.All(strategy.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
    }

    [Fact]
    public void Parameter_names_are_PEFTs()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { UseDora = true });
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        string[] expected = ["base_layer.weight", "lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"];
        Assert.All(expected, suffix => Assert.Contains("model.layers.0.self_attn.q_proj." + suffix, names));
        Assert.Contains("model.layers.1.self_attn.v_proj.lora_A.default.weight", names);
        Assert.DoesNotContain("model.layers.0.self_attn.q_proj.weight", names);
        var order = model.named_parameters().Select(p => p.name).ToList(); // the wrapper keeps q_proj's place
        Assert.True(order.IndexOf("model.layers.0.self_attn.q_proj.lora_B.default.weight") < order.IndexOf("model.layers.0.self_attn.k_proj.weight"));
        Assert.Equal(
            ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            strategy.TargetedModules("default"));
        Assert.All(model.named_parameters(), p => Assert.Equal(p.name.Contains(".lora_", StringComparison.Ordinal), p.parameter.requires_grad));
    }

    [Fact]
    public void Backward_reaches_only_the_trainable_parameters_and_leaks_no_tensor()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { UseDora = true, Dropout = 0.5 });
        model.train();
        using var ids = Ids();
        DisposeScopeManager.Statistics.Reset();
        using (NewDisposeScope())
        {
            model.call(ModelInput.FromIds(ids)).Logits.pow(2).mean().backward();
        }

        Assert.Equal(0, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
        var layer = strategy.LoraLayers["model.layers.0.self_attn.q_proj"];
        Assert.True(layer.LoraB("default").weight!.grad!.abs().sum().item<float>() > 0);
        Assert.True(layer.Magnitude("default")!.grad!.abs().sum().item<float>() > 0);
        Assert.Equal(0, layer.LoraA("default").weight!.grad!.abs().sum().item<float>()); // B = 0 at init
        Assert.All(model.named_parameters().Where(p => !p.parameter.requires_grad), p => Assert.Null(p.parameter.grad));

        // Dropout acts on the LoRA branch in training mode only.
        Randomize(strategy);
        using var first = Logits(model);
        using var second = Logits(model);
        Assert.False(BitEqual(first, second));
        model.eval();
        using var third = Logits(model);
        using var fourth = Logits(model);
        Assert.True(BitEqual(third, fourth));
    }

    [Fact]
    public void At_init_the_output_equals_the_base_output_exactly()
    {
        using var model = TinyModels.Create();
        using var before = Logits(model);
        Apply(model, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, Dropout = 0.1 });
        using var after = Logits(model);
        Assert.True(BitEqual(before, after));
    }

    [Theory]
    [InlineData(ScalarType.Float32, false, 1e-5)]
    [InlineData(ScalarType.Float32, true, 1e-5)]
    // bf16: merging rounds W + ΔW to bf16 once per weight (relative error 2⁻⁹), unmerged adds the fp32 update to a
    // bf16 output; through two layers the logits differ by a few bf16 ulps.
    [InlineData(ScalarType.BFloat16, false, 5e-2)]
    [InlineData(ScalarType.BFloat16, true, 5e-2)]
    public void Merged_output_equals_unmerged_output(ScalarType dtype, bool dora, double tolerance)
    {
        using var model = TinyModels.Create(dtype: dtype);
        using var baseLogits = Logits(model);
        var strategy = Apply(model, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, UseDora = dora });
        Randomize(strategy);
        using var unmerged = Logits(model);
        Assert.True(MaxDiff(unmerged, baseLogits) > 10 * tolerance, "the adapter should change the output");
        strategy.Merge();
        Assert.True(strategy.IsMerged);
        using var merged = Logits(model);
        Assert.True(MaxDiff(merged, unmerged) < tolerance, $"max diff {MaxDiff(merged, unmerged)}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Unmerge_restores_fp32_base_weights_within_rounding(bool dora)
    {
        // Not bit for bit: (W + ΔW) − ΔW rounds twice in fp32 (DoRA also divides by m/‖W+ΔW‖), so each element may
        // move by a few ulps of |W| + |ΔW|.
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { UseDora = dora });
        Randomize(strategy);
        var before = strategy.LoraLayers.ToDictionary(l => l.Key, l => l.Value.BaseWeight.clone());
        strategy.Merge();
        Assert.Contains(before, b => MaxDiff(b.Value, strategy.LoraLayers[b.Key].BaseWeight) > 1e-3);
        strategy.Unmerge();
        Assert.False(strategy.IsMerged);
        Assert.All(before, b => Assert.True(MaxDiff(b.Value, strategy.LoraLayers[b.Key].BaseWeight) < 1e-6));
    }

    [Fact]
    public void Remove_restores_the_base_model_bit_for_bit()
    {
        using var model = TinyModels.Create(TinyModels.Config(ModelFamily.Qwen2));
        var snapshot = Snapshot(model);
        var flags = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad);
        var strategy = Apply(model, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, Bias = LoraBias.All, ModulesToSave = ["lm_head"] });
        Randomize(strategy);
        using (no_grad())
        {
            foreach (var p in strategy.TrainableParameters().Where(p => p.Name.EndsWith(".bias", StringComparison.Ordinal)))
            {
                p.Parameter.add_(1.0); // as if training had changed the biases
            }
        }

        strategy.Remove();
        Assert.Null(strategy.Model);
        var after = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        Assert.Equal(snapshot.Keys.Order(), after.Keys.Order());
        Assert.All(snapshot, p => Assert.True(BitEqual(p.Value, after[p.Key]), p.Key));
        Assert.All(after, p => Assert.Equal(flags[p.Key], p.Value.requires_grad));
        Assert.All(model.LinearSlots(), s => Assert.IsNotType<LoraLinear>(s.Module));
    }

    [Fact]
    public void Forward_is_base_plus_scaling_B_A_x_with_rsLoRA_scaling()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { R = 4, Alpha = 8, UseRsLora = true });
        Randomize(strategy);
        var layer = strategy.LoraLayers["model.layers.0.self_attn.q_proj"];
        Assert.Equal(4.0, layer.GetConfig("default").Scaling); // 8 / √4
        using var x = randn(3, 32);
        using var y = layer.call(x);
        using var expected = x.matmul(layer.BaseWeight.t()) + (4.0 * x.matmul(layer.LoraA("default").weight!.t()).matmul(layer.LoraB("default").weight!.t()));
        Assert.True(MaxDiff(y, expected) < 1e-5);
        Assert.Equal(2.0, new LoraLayerConfig(4, 8).Scaling); // plain LoRA: 8 / 4
    }

    [Fact]
    public void Dora_forward_rescales_each_output_row_by_magnitude_over_the_detached_norm()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { UseDora = true, R = 2, Alpha = 4 });
        var layer = strategy.LoraLayers["model.layers.0.self_attn.v_proj"];
        using (no_grad())
        {
            // At init B = 0, so the magnitude is the row norm of W.
            Assert.True(MaxDiff(layer.Magnitude("default")!, linalg.vector_norm(layer.BaseWeight, dims: [1])) < 1e-6);
        }

        Randomize(strategy);
        using var x = randn(5, 32);
        using var y = layer.call(x);
        using var _ = no_grad();
        var adapted = layer.BaseWeight + (2.0 * layer.LoraB("default").weight!.matmul(layer.LoraA("default").weight!));
        var rows = layer.Magnitude("default")! / linalg.vector_norm(adapted, dims: [1]);
        using var expected = x.matmul((rows.unsqueeze(1) * adapted).t());
        Assert.True(MaxDiff(y, expected) < 1e-5, $"max diff {MaxDiff(y, expected)}");
    }

    [Fact]
    public void Adapters_are_fp32_on_a_bf16_base_and_the_output_keeps_the_base_dtype()
    {
        using var model = TinyModels.Create(dtype: ScalarType.BFloat16);
        var strategy = Apply(model, new LoraOptions { UseDora = true });
        Randomize(strategy);
        Assert.All(strategy.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        var layer = strategy.LoraLayers["model.layers.1.self_attn.q_proj"];
        Assert.Equal(ScalarType.BFloat16, layer.BaseWeight.dtype);
        using var x = randn(2, 32).to(ScalarType.BFloat16);
        using var y = layer.call(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);

        using var model16 = TinyModels.Create(dtype: ScalarType.BFloat16);
        var bf16Adapters = Apply(model16, new LoraOptions { AdapterDType = ScalarType.BFloat16 });
        Assert.All(bf16Adapters.TrainableParameters(), p => Assert.Equal(ScalarType.BFloat16, p.Parameter.dtype));
    }

    [Fact]
    public void Default_init_is_kaiming_uniform_A_and_zero_B_and_gaussian_init_has_std_one_over_r()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { TargetModules = LoraTargetModules.AllLinear });
        foreach (var layer in strategy.LoraLayers.Values)
        {
            var a = layer.LoraA("default").weight!;
            Assert.True(a.abs().max().item<float>() <= 1 / Math.Sqrt(layer.InFeatures) + 1e-7);
            Assert.True(a.std().item<float>() > 0.5 / Math.Sqrt(3 * layer.InFeatures)); // uniform(±b) has std b/√3
            Assert.Equal(0, layer.LoraB("default").weight!.abs().max().item<float>());
        }

        using var gaussianModel = TinyModels.Create();
        var gaussian = Apply(gaussianModel, new LoraOptions { TargetModules = LoraTargetModules.AllLinear, R = 4, Init = LoraInit.Gaussian });
        using var all = cat(gaussian.LoraLayers.Values.Select(l => l.LoraA("default").weight!.flatten()).ToList());
        Assert.True(all.numel() > 2000);
        Assert.InRange(all.std().item<float>(), 0.25 * 0.93, 0.25 * 1.07);
        Assert.InRange(all.mean().item<float>(), -0.02, 0.02);
        Assert.All(gaussian.LoraLayers.Values, l => Assert.Equal(0, l.LoraB("default").weight!.abs().max().item<float>()));
    }

    [Fact]
    public void The_seed_makes_the_init_reproducible()
    {
        using var m1 = TinyModels.Create();
        using var m2 = TinyModels.Create();
        var s1 = Apply(m1, new LoraOptions { Seed = 5 });
        var s2 = Apply(m2, new LoraOptions { Seed = 5 });
        Assert.All(s1.LoraLayers, l => Assert.True(BitEqual(l.Value.LoraA("default").weight!, s2.LoraLayers[l.Key].LoraA("default").weight!)));
    }

    [Theory]
    [InlineData(null)]
    [InlineData(4)]
    public void Pissa_keeps_the_output_and_remove_restores_the_mutated_base(int? niter)
    {
        using var model = TinyModels.Create();
        var snapshot = Snapshot(model);
        using var before = Logits(model);
        var strategy = Apply(model, new LoraOptions { R = 4, Alpha = 8, Init = LoraInit.Pissa, PissaNiter = niter });
        var layer = strategy.LoraLayers["model.layers.0.self_attn.q_proj"];
        Assert.True(MaxDiff(layer.BaseWeight, snapshot["model.layers.0.self_attn.q_proj.weight"]) > 1e-2, "PiSSA replaces W by its residual");
        Assert.True(layer.LoraB("default").weight!.abs().max().item<float>() > 0);
        using (var after = Logits(model))
        {
            Assert.True(MaxDiff(before, after) < 1e-4, $"max diff {MaxDiff(before, after)}");
        }

        if (niter is null)
        {
            // A and B hold the top singular directions: ‖B·A‖·scaling equals the top-r part of W.
            using var _ = no_grad();
            var (u, s, vh) = linalg.svd(snapshot["model.layers.0.self_attn.q_proj.weight"], fullMatrices: false);
            var top = u.narrow(1, 0, 4).matmul(diag(s.narrow(0, 0, 4))).matmul(vh.narrow(0, 0, 4));
            Assert.True(MaxDiff(layer.DeltaWeight("default"), top) < 1e-4);
        }

        strategy.Remove();
        Assert.All(model.named_parameters(), p => Assert.True(BitEqual(snapshot[p.name], p.parameter), p.name));
    }

    [Fact]
    public void Safe_merge_refuses_non_finite_weights()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model);
        using (no_grad())
        {
            strategy.LoraLayers["model.layers.1.self_attn.v_proj"].LoraB("default").weight!.fill_(float.NaN);
        }

        var before = Snapshot(model);
        var error = Assert.Throws<InvalidOperationException>(() => strategy.Merge(safeMerge: true));
        Assert.Contains("NaN", error.Message, StringComparison.Ordinal);
        Assert.True(BitEqual(before["model.layers.1.self_attn.v_proj.base_layer.weight"], strategy.LoraLayers["model.layers.1.self_attn.v_proj"].BaseWeight));
    }

    [Fact]
    public void Merging_into_a_tied_head_is_refused()
    {
        using var model = TinyModels.Create(TinyModels.Config(tied: true));
        var strategy = Apply(model, new LoraOptions { TargetModules = LoraTargetModules.FromNames("lm_head", "q_proj") });
        var error = Assert.Throws<InvalidOperationException>(() => strategy.Merge());
        Assert.Contains("lm_head", error.Message, StringComparison.Ordinal);
        Assert.False(strategy.IsMerged);
    }
}
