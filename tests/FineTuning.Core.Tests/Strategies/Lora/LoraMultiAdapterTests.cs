using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Lora;

/// <summary>PEFT's multi-adapter API: add, activate, disable, delete, weighted combinations.</summary>
public class LoraMultiAdapterTests
{
    private const string Q0 = "model.layers.0.self_attn.q_proj";

    [Fact]
    public void An_added_adapter_is_inactive_and_frozen_until_activated()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model);
        Randomize(strategy);
        using var withDefault = Logits(model);
        strategy.AddAdapter("other", new LoraOptions { TargetModules = new[] { "q_proj", "o_proj" }, R = 4, Seed = 3 });
        Randomize(strategy, "other", seed: 11);
        Assert.Equal(["default", "other"], strategy.AdapterNames);
        Assert.Equal(["default"], strategy.ActiveAdapters);
        Assert.DoesNotContain(strategy.TrainableParameters(), p => p.Name.Contains(".other.", StringComparison.Ordinal));
        using (var unchanged = Logits(model))
        {
            Assert.True(BitEqual(withDefault, unchanged));
        }

        strategy.SetActiveAdapters("other");
        Assert.All(strategy.TrainableParameters(), p => Assert.Contains(".other.", p.Name, StringComparison.Ordinal));
        Assert.Equal(8, strategy.TrainableParameters().Count); // q, o × 2 layers × (A, B)
        strategy.SetActiveAdapters("default", "other");
        Assert.Equal(16, strategy.TrainableParameters().Count); // default: q,v × 2 layers × (A, B); other: q,o × 2 × (A, B)
    }

    [Fact]
    public void Active_adapters_are_summed()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model);
        strategy.AddAdapter("other", new LoraOptions { R = 2, Alpha = 6 });
        Randomize(strategy);
        Randomize(strategy, "other", seed: 3);
        strategy.SetActiveAdapters("default", "other");
        var layer = strategy.LoraLayers[Q0];
        using var x = randn(4, 32);
        using var y = layer.call(x);
        using var _ = no_grad();
        using var expected = x.matmul((layer.BaseWeight + layer.DeltaWeight("default") + layer.DeltaWeight("other")).t());
        Assert.True(MaxDiff(y, expected) < 1e-5);
        Assert.Equal(3.0, layer.GetConfig("other").Scaling);
    }

    [Fact]
    public void Disable_scope_runs_the_base_model_and_re_enables_on_dispose()
    {
        using var model = TinyModels.Create();
        using var baseLogits = Logits(model);
        var strategy = Apply(model);
        Randomize(strategy);
        using var adapted = Logits(model);
        strategy.Merge();
        using (strategy.DisableAdapters())
        {
            Assert.False(strategy.IsMerged); // disabling unmerges, as PEFT's forward does
            using (strategy.DisableAdapters())
            {
                Assert.True(strategy.AdaptersDisabled);
            }

            Assert.True(strategy.AdaptersDisabled);
            using var disabled = Logits(model);
            Assert.True(MaxDiff(disabled, baseLogits) < 1e-6);
        }

        Assert.False(strategy.AdaptersDisabled);
        using var again = Logits(model);
        Assert.True(MaxDiff(again, adapted) < 1e-6);
    }

    [Fact]
    public void Deleting_the_active_adapter_activates_the_first_remaining_one()
    {
        using var model = TinyModels.Create();
        var logger = new ListLogger();
        var strategy = Apply(model, logger: logger);
        strategy.AddAdapter("zeta", new LoraOptions { TargetModules = new[] { "k_proj" } });
        strategy.AddAdapter("beta", new LoraOptions());
        strategy.DeleteAdapter("default");
        Assert.Equal(["zeta", "beta"], strategy.AdapterNames);
        Assert.Equal(["beta"], strategy.ActiveAdapters);
        Assert.Contains(logger.Entries, e => e.Message.Contains("'beta' is now active", StringComparison.Ordinal));
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains(".default.", StringComparison.Ordinal));
        Assert.Throws<ArgumentException>(() => strategy.DeleteAdapter("default"));
        strategy.SetActiveAdapters("beta");
        strategy.Merge();
        Assert.Throws<InvalidOperationException>(() => strategy.DeleteAdapter("beta"));
    }

    [Fact]
    public void Linear_combination_follows_PEFTs_formula()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { R = 4, Alpha = 8 });
        strategy.AddAdapter("other", new LoraOptions { R = 4, Alpha = 2, TargetModules = new[] { "q_proj", "k_proj" }, Seed = 9 });
        Randomize(strategy);
        Randomize(strategy, "other", seed: 5);
        strategy.AddWeightedAdapter(["default", "other"], [0.5, -2.0], "mix");
        Assert.Equal(["default"], strategy.ActiveAdapters);
        var options = strategy.GetAdapterOptions("mix");
        Assert.Equal(4, options.R);
        Assert.Equal(4, options.Alpha);

        using var _ = no_grad();
        var q = strategy.LoraLayers[Q0];
        Assert.Equal(1.0, q.GetConfig("mix").Scaling);
        // default: w·s = 0.5·2 = 1; other: w·s = −2·0.5 = −1 → A = 1·A₁ − 1·A₂, B = B₁ + B₂.
        var expectedA = q.LoraA("default").weight! - q.LoraA("other").weight!;
        var expectedB = q.LoraB("default").weight! + q.LoraB("other").weight!;
        Assert.True(MaxDiff(q.LoraA("mix").weight!, expectedA) < 1e-6);
        Assert.True(MaxDiff(q.LoraB("mix").weight!, expectedB) < 1e-6);

        // A layer only "default" wraps: √(0.5·2) = 1 on both sides, so the mix reproduces 0.5·ΔW exactly.
        var v = strategy.LoraLayers["model.layers.0.self_attn.v_proj"];
        Assert.True(MaxDiff(v.DeltaWeight("mix"), 0.5 * v.DeltaWeight("default")) < 1e-6);
        Assert.True(strategy.LoraLayers["model.layers.0.self_attn.k_proj"].HasAdapter("mix"));

        var error = Assert.Throws<ArgumentException>(() =>
        {
            strategy.AddAdapter("small", new LoraOptions { R = 2 });
            strategy.AddWeightedAdapter(["default", "small"], [1, 1], "bad");
        });
        Assert.Contains("same r", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Cat_combination_is_the_exact_weighted_sum_of_updates()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new LoraOptions { R = 4, Alpha = 8 });
        strategy.AddAdapter("other", new LoraOptions { R = 2, Alpha = 2, Seed = 9 });
        Randomize(strategy);
        Randomize(strategy, "other", seed: 5);
        strategy.AddWeightedAdapter(["default", "other"], [0.3, 1.5], "cat", LoraCombination.Cat);
        var layer = strategy.LoraLayers[Q0];
        Assert.Equal(6, layer.GetConfig("cat").R);
        using var _ = no_grad();
        var expected = (0.3 * layer.DeltaWeight("default")) + (1.5 * layer.DeltaWeight("other"));
        Assert.True(MaxDiff(layer.DeltaWeight("cat"), expected) < 1e-6);
    }
}
