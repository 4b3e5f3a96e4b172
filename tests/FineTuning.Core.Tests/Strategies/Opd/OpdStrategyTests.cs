using System.Text.Json.Nodes;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Training;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Opd.OpdTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Opd;

/// <summary>The OPD strategy on the tiny model: budget, untouched base, delta files, round trips, determinism (opd.md §5.1).</summary>
public sealed class OpdStrategyTests
{
    [Fact]
    public void Selection_trains_exactly_the_budget_and_leaves_the_outputs_unchanged()
    {
        using var model = TinyModels.Create();
        var before = Logits(model);
        var strategy = Prepared(model);

        Assert.Equal(TinySelectable, strategy.SelectableCount);
        var budget = (long)Math.Floor(0.05 * TinySelectable); // 921
        Assert.Equal(budget, strategy.TrainableCount);
        Assert.Equal(budget, model.CountParameters().Trainable);
        Assert.Equal(budget, strategy.TrainableParameters().Sum(p => p.Parameter.numel()));
        Assert.True(BitEqual(before, Logits(model)), "δ starts at 0");

        var report = strategy.Report!;
        Assert.Equal(budget, (long)report["budget"]!["resolved"]!);
        Assert.Equal(budget, (long)report["budget"]!["used"]!);
        Assert.Equal((long)Math.Floor(0.2 * TinySelectable), (long)report["budget"]!["core"]!);
        Assert.Contains("not on-policy distillation", (string)report["method_name"]!, StringComparison.Ordinal);
        Assert.Equal(budget, report["tensors"]!.AsArray().Sum(t => (long)t!["selected"]!));
        Assert.True((double)report["predicted"]!["gain"]! > (double)report["predicted"]!["random_expected_gain"]!);
    }

    [Fact]
    public void Training_leaves_every_base_weight_bit_identical_and_merging_changes_only_the_selected_entries()
    {
        using var model = TinyModels.Create();
        var snapshot = TrainingData.Snapshot(model);
        var strategy = Prepared(model);
        var wrapped = Logits(model);
        var trainer = TrainingData.Trainer(model, strategy, TrainingData.Fast with { MaxSteps = 3 });
        trainer.Train(TaskExamples);

        foreach (var (name, p) in BaseParameters(model))
        {
            Assert.False(p.requires_grad, name);
            Assert.True(BitEqual(snapshot[name], p), name);
        }

        Assert.Contains(strategy.TrainableParameters(), p => p.Parameter.abs().max().item<float>() > 0);
        var trained = Logits(model);
        Assert.False(BitEqual(wrapped, trained));

        var delta = strategy.ToDelta();
        strategy.MergeAndUnload();
        Assert.Null(strategy.Model);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains("opd_", StringComparison.Ordinal));
        Assert.True(BitEqual(trained, Logits(model)), "merged model computes what the wrapped one did");
        var support = delta.Tensors.ToDictionary(t => t.Name, t => t.Indices.ToHashSet());
        foreach (var (name, p) in model.named_parameters())
        {
            var changed = p.ne(snapshot[name]).flatten().nonzero().squeeze(1).data<long>().ToArray();
            Assert.All(changed, i => Assert.True(support.TryGetValue(name, out var s) && s.Contains(i), $"{name}[{i}] changed outside the selection"));
        }
    }

    [Fact]
    public void A_delta_applies_to_a_fresh_base_and_removes_bit_exactly()
    {
        using var model = TinyModels.Create();
        var strategy = Prepared(model);
        Randomize(strategy);
        var expected = Logits(model);
        var delta = strategy.ToDelta();
        Assert.Equal(strategy.TrainableCount, delta.Count);

        using var fresh = TinyModels.Create();
        var snapshot = TrainingData.Snapshot(fresh);
        var applied = delta.ApplyTo(fresh);
        Assert.True(BitEqual(expected, Logits(fresh)));
        applied.Remove();
        foreach (var (name, p) in fresh.named_parameters())
        {
            Assert.True(BitEqual(snapshot[name], p), name);
        }
    }

    [Fact]
    public void Save_then_load_through_the_adapter_loader_reproduces_the_model_and_refuses_another_base()
    {
        using var temp = new TempDirectory();
        var folder = temp.File("opd");
        using var model = TinyModels.Create();
        var strategy = Prepared(model);
        Randomize(strategy);
        var expected = Logits(model);
        strategy.Save(folder);
        foreach (var file in new[] { SparseDelta.ConfigFileName, SparseDelta.WeightsFileName, "opd_report.json", "opd_report.md" })
        {
            Assert.True(File.Exists(Path.Combine(folder, file)), file);
        }

        var report = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "opd_report.json")))!;
        Assert.True((double)report["general_loss_before"]! > 0);
        Assert.True((double)report["after_training"]!["general_loss"]! > 0);
        Assert.Contains("Optimal Parameter Decoupling", File.ReadAllText(Path.Combine(folder, "opd_report.md")), StringComparison.Ordinal);

        using var fresh = TinyModels.Create();
        var loaded = Assert.IsType<OpdStrategy>(AdapterLoader.Load(folder, fresh));
        Assert.True(BitEqual(expected, Logits(fresh)));
        Assert.Empty(loaded.TrainableParameters());
        loaded.Remove();
        Assert.DoesNotContain(fresh.named_parameters(), p => p.name.Contains("opd_", StringComparison.Ordinal));

        using var other = TinyModels.Create(seed: 99);
        var error = Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(folder, other));
        Assert.Contains(SparseDelta.ConfigFileName, error.Message, StringComparison.Ordinal);
        Assert.NotNull(error.TensorName);
        Assert.Contains(error.TensorName!, error.Message, StringComparison.Ordinal);
        Assert.Contains("expected sha256:", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(other.named_parameters(), p => p.name.Contains("opd_", StringComparison.Ordinal));
    }

    [Fact]
    public void Deltas_with_disjoint_supports_compose_in_any_order_and_overlapping_ones_are_refused()
    {
        using var model = TinyModels.Create();
        var hash = SparseDelta.HashModel(model);
        var tensors = OpdTestKit.BaseParameters(model);
        SparseDeltaTensor Part(string name, long[] indices, float[] values) =>
            new(name, tensors[name].shape, "F32", SparseDelta.HashTensor(tensors[name]), indices, values);
        const string q = "model.layers.0.self_attn.q_proj.weight", v = "model.layers.1.self_attn.v_proj.weight";
        var a = new SparseDelta(hash, [Part(q, [0, 5], [0.25f, -1f])]);
        var b = new SparseDelta(hash, [Part(q, [1, 7], [2f, 0.5f]), Part(v, [3], [-0.125f])]);
        var c = new SparseDelta(hash, [Part(q, [5], [1f])]);

        Dictionary<string, Tensor> After(params SparseDelta[] sequence)
        {
            using var fresh = TinyModels.Create();
            foreach (var d in sequence)
            {
                d.ApplyTo(fresh, verifyBase: false);
            }

            return TrainingData.Snapshot(fresh);
        }

        var composed = SparseDelta.Compose([a, b]);
        Assert.Equal(5, composed.Count);
        var ab = After(a, b);
        foreach (var other in new[] { After(b, a), After(composed) })
        {
            Assert.All(ab, p => Assert.True(BitEqual(p.Value, other[p.Key]), p.Key));
        }

        Assert.Equal(tensors[q].flatten()[5].item<float>() - 1f, ab[q].flatten()[5].item<float>());
        var error = Assert.Throws<InvalidOperationException>(() => SparseDelta.Compose([a, c]));
        Assert.Contains("overlap at entry 5", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_same_seed_gives_the_same_selection_and_byte_identical_files()
    {
        using var temp = new TempDirectory();
        byte[][] Run(string name)
        {
            using var model = TinyModels.Create();
            var strategy = Prepared(model);
            Randomize(strategy);
            var folder = temp.File(name);
            strategy.Save(folder);
            return new[] { "opd_report.json", "opd_report.md", SparseDelta.ConfigFileName, SparseDelta.WeightsFileName }.Select(f => File.ReadAllBytes(Path.Combine(folder, f))).ToArray();
        }

        var first = Run("a");
        var second = Run("b");
        for (var i = 0; i < first.Length; i++)
        {
            Assert.Equal(first[i], second[i]);
        }
    }

    [Fact]
    public void The_anchor_is_half_lambda_times_the_general_fisher_weighted_squared_delta()
    {
        using var model = TinyModels.Create();
        var strategy = Prepared(model, Options with { AnchorStrength = 2 });
        using (no_grad())
        {
            foreach (var p in strategy.TrainableParameters())
            {
                p.Parameter.zero_();
            }
        }

        Assert.Equal(0f, strategy.RegularizationLoss()!.item<float>());
        var wrapper = model.named_modules().Select(m => m.module).OfType<OpdLinear>().First();
        using (no_grad())
        {
            wrapper.WeightDelta![0] = 0.5f;
            wrapper.WeightDelta![1] = -2f;
        }

        wrapper.WeightAnchor = full(wrapper.WeightDelta!.shape[0], 3f);
        // λ/2 · Σ F̃ δ² = 2/2 · (3·0.25 + 3·4) = 12.75
        Assert.Equal(12.75f, strategy.RegularizationLoss()!.item<float>(), 1e-5f);
        Assert.Null(Prepared(TinyModels.Create(), Options with { AnchorStrength = 0 }).RegularizationLoss());
    }

    [Fact]
    public void Layer_granularity_trains_whole_layers_and_tensor_granularity_stays_within_the_budget()
    {
        // Half the selectable parameters: a layer is 9216 of which 20 % core at most → one layer fits, two do not.
        using var model = TinyModels.Create();
        var layer = Prepared(model, Options with { Granularity = OpdGranularity.Layer, Budget = OpdBudget.Of(0.5) });
        var wrapped = model.named_modules().Where(m => m.module is OpdLinear).Select(m => m.name).ToList();
        Assert.Equal(7, wrapped.Count);
        Assert.Single(wrapped.Select(n => n.Split('.')[2]).Distinct());
        Assert.True(layer.TrainableCount <= TinySelectable / 2);
        Assert.Equal(TinySelectable / 2, (long)layer.Report!["budget"]!["resolved"]!);

        using var other = TinyModels.Create();
        var tensor = Prepared(other, Options with { Granularity = OpdGranularity.Tensor, Budget = OpdBudget.Count(3000) });
        Assert.InRange(tensor.TrainableCount, 1, 3000);
        Assert.Equal(2, (long)tensor.Report!["budget"]!["knapsack_quantum"]!); // ⌈3000 / 2000⌉
    }

    [Theory]
    [InlineData("Budget")]
    [InlineData("CoreFraction")]
    [InlineData("Beta")]
    [InlineData("GeneralData")]
    public void Invalid_options_name_the_option(string option)
    {
        var options = option switch
        {
            "Budget" => Options with { Budget = OpdBudget.Of(1.5) },
            "CoreFraction" => Options with { CoreFraction = 1 },
            "Beta" => Options with { Beta = -1 },
            _ => Options with { GeneralData = null },
        };
        var error = Assert.Throws<InvalidOptionException>(() => new OpdStrategy(options));
        Assert.Equal($"OpdOptions.{option}", error.Option);
        Assert.Throws<InvalidOptionException>(() => new OpdStrategy(Options with { Budget = OpdBudget.Count(0) }));
        Assert.Equal(OpdBudget.Of(0.01), OpdBudget.Parse("0.01"));
        Assert.Equal(OpdBudget.Count(5000), OpdBudget.Parse("5000"));
        Assert.Throws<FormatException>(() => OpdBudget.Parse("2.5"));
    }
}
