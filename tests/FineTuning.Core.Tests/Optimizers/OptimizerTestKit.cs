using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tests.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Optimizers;

/// <summary>Models, standalone parameters and comparisons for the optimizer tests.</summary>
internal static class OptimizerTestKit
{
    /// <summary>Runs forward and backward of the mean next-token loss on a fixed batch.</summary>
    public static void Backward(CausalLanguageModel model, int seed)
    {
        using var scope = NewDisposeScope();
        var batch = BatchCollator.Collate(TrainingData.Examples(3, seed).Select(PackedRow.Single).ToList(), true);
        (NextTokenLoss.Sum(model, batch) / batch.TargetCount).backward();
    }

    /// <summary>A Qwen2-shaped tiny model (it has biases) with full SFT.</summary>
    public static (CausalLanguageModel Model, IParameterStrategy Strategy) Qwen2(ScalarType dtype = ScalarType.Float32) =>
        TrainingData.FullSft(dtype, TinyModels.Config(ModelFamily.Qwen2));

    /// <summary>Standalone parameters with seeded values: one per shape.</summary>
    public static List<NamedParameter> Parameters(int seed, ScalarType dtype, params long[][] shapes)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed);
        return shapes.Select((shape, i) => new NamedParameter(
                $"p{i}",
                new TorchSharp.Modules.Parameter((randn(shape, generator: generator) * 0.1).to(dtype).DetachFromDisposeScope())))
            .ToList();
    }

    /// <summary>Sets every parameter's gradient to 0.01 · randn, seeded per step.</summary>
    public static void SetGradients(IEnumerable<NamedParameter> parameters, int step)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)(1000 + step));
        foreach (var p in parameters)
        {
            p.Parameter.grad = (randn(p.Parameter.shape, generator: generator) * 0.01).to(p.Parameter.dtype).DetachFromDisposeScope();
        }
    }

    /// <summary>Copies of the parameters.</summary>
    public static List<NamedParameter> Clone(IEnumerable<NamedParameter> parameters)
    {
        using var noGrad = no_grad();
        return parameters.Select(p => new NamedParameter(p.Name, new TorchSharp.Modules.Parameter(p.Parameter.detach().clone().DetachFromDisposeScope()))).ToList();
    }

    /// <summary>The largest |a − b| / max(|b|, 1e-3) over all pairs of parameters.</summary>
    public static double MaxRelativeDifference(IEnumerable<Tensor> actual, IEnumerable<Tensor> expected)
    {
        using var scope = NewDisposeScope();
        return actual.Zip(expected)
            .Select(pair =>
            {
                var (a, b) = (pair.First.to(ScalarType.Float32), pair.Second.to(ScalarType.Float32));
                return ((a - b).abs() / b.abs().clamp_min(1e-3)).max().item<float>();
            })
            .DefaultIfEmpty(0)
            .Max();
    }

    /// <summary>Whether two tensors hold the same values (same shape, bit for bit up to ±0).</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
    }
}
