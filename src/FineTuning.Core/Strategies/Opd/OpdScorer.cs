using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// Per-example-gradient statistics at the base weights (opd.md §4.3): one forward and backward pass per example
/// (a batch of one — a batch-mean gradient is never squared, which would estimate ḡ², not E[g²]). The loss of an
/// example is its mean next-token cross-entropy over its target tokens.
/// </summary>
internal static class OpdScorer
{
    /// <summary>Mean gradient ḡ and empirical Fisher diagonal E[g²] (fp32, on the model's device) per target.</summary>
    public static (Tensor[] Mean, Tensor[] Fisher) Accumulate(CausalLanguageModel model, IReadOnlyList<OpdTarget> targets, IReadOnlyList<TokenizedExample> examples, bool completionOnly)
    {
        if (examples.Count == 0)
        {
            throw new ArgumentException("No calibration example has a target token.", nameof(examples));
        }

        var mean = targets.Select(t => zeros(t.Parameter.shape, ScalarType.Float32, t.Parameter.device)).ToArray();
        var fisher = targets.Select(t => zeros(t.Parameter.shape, ScalarType.Float32, t.Parameter.device)).ToArray();
        var flags = model.named_parameters().Select(p => (p.parameter, p.parameter.requires_grad)).ToList();
        var wasTraining = model.training;
        try
        {
            foreach (var (p, _) in flags)
            {
                p.requires_grad = false;
            }

            var inputs = targets.Select(t => (Tensor)t.Parameter).ToList();
            foreach (var t in targets)
            {
                t.Parameter.requires_grad = true;
            }

            model.eval();
            foreach (var example in examples)
            {
                using var scope = NewDisposeScope();
                var batch = BatchCollator.Collate([PackedRow.Single(example)], completionOnly);
                var loss = NextTokenLoss.Sum(model, batch) / batch.TargetCount;
                var grads = autograd.grad([loss], inputs, allow_unused: true);
                for (var i = 0; i < targets.Count; i++)
                {
                    if (grads[i] is { } g && g.numel() > 0)
                    {
                        var g32 = g.to(ScalarType.Float32);
                        mean[i].add_(g32);
                        fisher[i].addcmul_(g32, g32, 1);
                    }
                }
            }
        }
        finally
        {
            foreach (var (p, flag) in flags)
            {
                p.requires_grad = flag;
            }

            model.train(wasTraining);
        }

        foreach (var t in mean.Concat(fisher))
        {
            t.div_(examples.Count);
        }

        return (mean, fisher);
    }

    /// <summary>
    /// The scores of opd.md §4.3 from ḡ, Fᵀ and Fᴳ. ε is per tensor (ε_T = 10⁻³·mean Fᵀ, ε_G = 10⁻¹·mean Fᴳ over that
    /// tensor) so that rescaling a whole tensor leaves G, H, S and R exactly unchanged.
    /// </summary>
    public static OpdScores Compute(IReadOnlyList<OpdTarget> targets, Tensor[] mean, Tensor[] taskFisher, Tensor[]? generalFisher, OpdOptions options)
    {
        var scores = new OpdScores(targets, mean, taskFisher, generalFisher);
        using var generator = options.ScoreKind == OpdScoreKind.Random ? new Generator((ulong)options.Seed) : null;
        for (var i = 0; i < targets.Count; i++)
        {
            using var scope = NewDisposeScope();
            var fT = taskFisher[i];
            var fG = generalFisher?[i] ?? zeros_like(fT);
            var epsT = NonZero(1e-3f * fT.mean().item<float>());
            var epsG = NonZero(1e-1f * fG.mean().item<float>());
            scores.EpsilonTask[i] = epsT;
            scores.EpsilonGeneral[i] = epsG;
            var denominator = fT + epsT;
            var squared = mean[i].square();
            var gain = squared.mul(0.5).div(denominator);
            var damage = fG.mul(squared).mul(0.5).div(denominator.square());
            var score = options.ScoreKind switch
            {
                OpdScoreKind.Decoupled => gain - (options.Beta * damage),
                OpdScoreKind.Ratio => fT / (fG + epsG),
                OpdScoreKind.TaskFisher => fT.clone(),
                OpdScoreKind.Random => rand(fT.shape, generator: generator, dtype: ScalarType.Float32).to(fT.device),
                _ => throw new ArgumentOutOfRangeException(nameof(options), options.ScoreKind, null),
            };
            scores.Gain[i] = gain.MoveToOuterDisposeScope();
            scores.Damage[i] = damage.MoveToOuterDisposeScope();
            scores.Score[i] = score.MoveToOuterDisposeScope();
        }

        scores.Core = CoreSet(targets, generalFisher, options.CoreFraction);
        return scores;
    }

    /// <summary>
    /// The core set: the ⌊κ·N⌋ elements with the highest general Fisher normalised by its tensor's mean (so one layer
    /// with large activations cannot absorb it); all false when κ is 0.
    /// </summary>
    public static Tensor[] CoreSet(IReadOnlyList<OpdTarget> targets, Tensor[]? generalFisher, double fraction)
    {
        var total = targets.Sum(t => t.Count);
        var count = (long)Math.Floor(fraction * total);
        if (generalFisher is null || count == 0)
        {
            return targets.Select(t => zeros(t.Parameter.shape, ScalarType.Bool, t.Parameter.device)).ToArray();
        }

        using var scope = NewDisposeScope();
        var normalised = generalFisher.Select(f => f.mean().item<float>() is var m && m > 0 ? (f / m).flatten() : zeros(f.numel(), ScalarType.Float32, f.device)).ToList();
        var flat = cat(normalised, 0);
        var mask = zeros(flat.numel(), ScalarType.Bool, flat.device);
        mask.index_fill_(0, flat.topk((int)count).indexes, true);
        var result = new Tensor[targets.Count];
        long offset = 0;
        for (var i = 0; i < targets.Count; i++)
        {
            result[i] = mask.narrow(0, offset, targets[i].Count).reshape(targets[i].Parameter.shape).clone().MoveToOuterDisposeScope();
            offset += targets[i].Count;
        }

        return result;
    }

    private static float NonZero(float value) => value > 0 && float.IsFinite(value) ? value : 1f;
}
