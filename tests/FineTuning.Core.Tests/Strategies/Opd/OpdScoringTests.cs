using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Training;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Opd;

/// <summary>OPD's statistics and scores (opd.md §4.3, §5.1.2, §5.1.4, §5.1.5).</summary>
public sealed class OpdScoringTests
{
    [Fact]
    public void Fisher_is_the_mean_of_per_example_squared_gradients_not_the_square_of_the_batch_gradient()
    {
        using var model = TinyModels.Create();
        var examples = TrainingData.Examples(4, seed: 3);
        var targets = OpdTarget.Find(model, includeHead: false);
        model.named_parameters().First().parameter.requires_grad = false;
        var flags = model.parameters().Select(p => p.requires_grad).ToList();
        var (mean, fisher) = OpdScorer.Accumulate(model, targets, examples, completionOnly: true);
        Assert.Equal(flags, model.parameters().Select(p => p.requires_grad).ToList());
        model.named_parameters().First().parameter.requires_grad = true;

        // Reference: one backward per example through the plain model, mean loss over its target tokens, in doubles.
        var name = "model.layers.1.mlp.down_proj.weight";
        var index = targets.FindIndex(t => t.Name == name);
        var parameter = model.named_parameters().Single(p => p.name == name).parameter;
        var perExample = new List<double[]>();
        foreach (var example in examples)
        {
            using (var scope = NewDisposeScope())
            {
                var batch = BatchCollator.Collate([PackedRow.Single(example)], lossOnCompletionOnly: true);
                (Evaluation.NextTokenLoss.Sum(model, batch) / batch.TargetCount).backward();
            }

            perExample.Add(parameter.grad!.to(ScalarType.Float64).flatten().data<double>().ToArray());
            TrainingData.ClearGradients(model);
        }

        var n = perExample[0].Length;
        var expectedMean = Enumerable.Range(0, n).Select(i => perExample.Average(g => g[i])).ToArray();
        var expectedFisher = Enumerable.Range(0, n).Select(i => perExample.Average(g => g[i] * g[i])).ToArray();
        var actualMean = mean[index].flatten().data<float>().ToArray();
        var actualFisher = fisher[index].flatten().data<float>().ToArray();
        for (var i = 0; i < n; i++)
        {
            Assert.Equal(expectedMean[i], actualMean[i], 1e-6 + (1e-4 * Math.Abs(expectedMean[i])));
            Assert.Equal(expectedFisher[i], actualFisher[i], 1e-9 + (1e-4 * expectedFisher[i]));
        }

        // E[g²] ≥ (E[g])², strictly where examples disagree: the batch shortcut (squaring the mean) would be much smaller.
        var squaredMean = expectedMean.Select(m => m * m).Sum();
        Assert.True(expectedFisher.Sum() > 1.5 * squaredMean, $"Σ E[g²] {expectedFisher.Sum()} vs Σ ḡ² {squaredMean}");
    }

    [Fact]
    public void Scores_follow_the_formulas_worked_by_hand()
    {
        // One tensor of 2 entries: ḡ = [1, 1], Fᵀ = [1, 3] (mean 2 → ε_T = 0.002), Fᴳ = [2, 0] (mean 1 → ε_G = 0.1).
        using var parameter = new Parameter(zeros(2));
        var target = new OpdTarget("w", "s", false, 0, "q_proj", parameter);
        var mean = new[] { tensor(new[] { 1f, 1f }) };
        var task = new[] { tensor(new[] { 1f, 3f }) };
        var general = new[] { tensor(new[] { 2f, 0f }) };

        var decoupled = OpdScorer.Compute([target], mean, task, general, OpdOptions.Default with { Beta = 0.5, CoreFraction = 0 });
        // G = ½·1/(1.002) and ½·1/(3.002); H = ½·2·1/1.002² and 0; S = G − 0.5·H.
        AssertValues([0.499002, 0.166556], decoupled.Gain[0]);
        AssertValues([0.996012, 0], decoupled.Damage[0]);
        AssertValues([0.499002 - 0.498006, 0.166556], decoupled.Score[0]);
        Assert.Equal(0.002f, decoupled.EpsilonTask[0], 1e-7f);

        var ratio = OpdScorer.Compute([target], mean, task, general, OpdOptions.Default with { ScoreKind = OpdScoreKind.Ratio, CoreFraction = 0 });
        AssertValues([1 / 2.1, 3 / 0.1], ratio.Score[0]); // Fᵀ/(Fᴳ + 0.1)

        // κ = 0.5 of 2 entries: the one with the larger normalised general Fisher is core, and cannot be selected.
        var core = OpdScorer.Compute([target], mean, task, general, OpdOptions.Default with { CoreFraction = 0.5 });
        Assert.Equal([true, false], core.Core[0].data<bool>().ToArray());
        Assert.True(float.IsNegativeInfinity(core.Eligible(0)[0].item<float>()));
    }

    [Fact]
    public void A_planted_general_critical_row_is_core_and_never_selected_though_it_would_be_without_the_core()
    {
        using var model = TinyModels.Create();
        var targets = OpdTarget.Find(model, includeHead: false);
        var mean = targets.Select(t => rand(t.Parameter.shape, generator: new Generator(1))).ToArray();
        var task = mean.Select(m => m.square().mul(2)).ToArray();
        var general = targets.Select(t => rand(t.Parameter.shape, generator: new Generator(2))).ToArray();
        var planted = targets.FindIndex(t => t.Name == "model.layers.0.mlp.up_proj.weight");
        var columns = targets[planted].Parameter.shape[1];
        general[planted][0].fill_(1e6); // row 0: huge general Fisher (normalised by its tensor mean: ≈ 64 vs ≤ 2 elsewhere)
        mean[planted][0].mul_(10); // and a large mean task gradient, so its gain G = ½ḡ²/(Fᵀ+ε) is the highest of all
        var total = targets.Sum(t => t.Count);

        Tensor[] Select(double coreFraction)
        {
            // β = 0: only the core set can keep the planted row out.
            var scores = OpdScorer.Compute(targets, mean, task, general, OpdOptions.Default with { Beta = 0, CoreFraction = coreFraction });
            return OpdSelector.Elements(targets.Select((_, i) => scores.Eligible(i)).ToList(), total / 10, rowQuotas: false);
        }

        Assert.True(Select(0)[planted][0].all().item<bool>());
        var withCore = Select((columns + 0.5) / total);
        Assert.False(withCore[planted][0].any().item<bool>());
        Assert.Equal(total / 10, withCore.Sum(m => m.sum().item<long>()));
    }

    [Fact]
    public void Scores_and_selection_do_not_change_when_one_layer_is_rescaled_and_the_next_compensates()
    {
        // v_proj·4 and o_proj/4 compute the same function (attention is linear in V) — exactly, since 4 is a power of
        // two. Gradients scale by 1/4 and 4 exactly, so with per-tensor ε, G, H, S and the core set are bit-identical.
        var general = TrainingData.Examples(6, seed: 9);
        var task = TrainingData.Examples(6, seed: 10);
        (Tensor[] Scores, Tensor[] Selection) Run(CausalLanguageModel model, OpdScoreKind kind)
        {
            var targets = OpdTarget.Find(model, includeHead: false);
            var (mean, fT) = OpdScorer.Accumulate(model, targets, task, true);
            var (_, fG) = OpdScorer.Accumulate(model, targets, general, true);
            var scores = OpdScorer.Compute(targets, mean, fT, fG, OpdOptions.Default with { ScoreKind = kind });
            var masks = OpdSelector.Elements(targets.Select((_, i) => scores.Eligible(i)).ToList(), targets.Sum(t => t.Count) / 10, rowQuotas: false);
            return (scores.Score, masks);
        }

        using var plain = TinyModels.Create();
        using var rescaled = TinyModels.Create();
        using (no_grad())
        {
            var p = rescaled.named_parameters().ToDictionary(x => x.name, x => x.parameter);
            p["model.layers.0.self_attn.v_proj.weight"].mul_(4);
            p["model.layers.0.self_attn.o_proj.weight"].div_(4);
        }

        var ids = tensor(new long[] { 3, 14, 15, 92, 65, 35 }, [1, 6], dtype: ScalarType.Int64);
        Assert.True(Same(plain.call(new ModelInput { InputIds = ids }).Logits, rescaled.call(new ModelInput { InputIds = ids }).Logits));

        var (scoresA, selectionA) = Run(plain, OpdScoreKind.Decoupled);
        var (scoresB, selectionB) = Run(rescaled, OpdScoreKind.Decoupled);
        for (var i = 0; i < scoresA.Length; i++)
        {
            Assert.True(Same(scoresA[i], scoresB[i]), $"score of target {i}");
            Assert.True(Same(selectionA[i], selectionB[i]), $"selection of target {i}");
        }

        // Raw task Fisher (FISH) is not invariant: the same rescaling moves its selection.
        var (_, fishA) = Run(plain, OpdScoreKind.TaskFisher);
        var (_, fishB) = Run(rescaled, OpdScoreKind.TaskFisher);
        Assert.Contains(Enumerable.Range(0, fishA.Length), i => !Same(fishA[i], fishB[i]));
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    private static void AssertValues(double[] expected, Tensor actual)
    {
        var values = actual.data<float>().ToArray();
        Assert.Equal(expected.Length, values.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i], values[i], 1e-5);
        }
    }
}
