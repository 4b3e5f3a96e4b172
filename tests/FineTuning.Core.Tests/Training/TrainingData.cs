using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

/// <summary>Data, models and helpers shared by the trainer tests.</summary>
internal static class TrainingData
{
    public static ITextTokenizer Gpt2 { get; } = TokenizerLoader.Gpt2();

    /// <summary>Prompt/completion examples over the tiny vocabulary (ids 3..96): the first <c>prompt</c> tokens are not trainable.</summary>
    public static List<TokenizedExample> Examples(int count, int seed = 7, int minLength = 4, int maxLength = 12, int prompt = 2)
    {
        var random = new Random(seed);
        var result = new List<TokenizedExample>();
        for (var i = 0; i < count; i++)
        {
            var length = random.Next(minLength, maxLength + 1);
            var ids = Enumerable.Range(0, length).Select(_ => random.Next(3, 97)).ToList();
            var mask = Enumerable.Range(0, length).Select(t => t >= prompt).ToList();
            result.Add(new TokenizedExample(ids, mask));
        }

        return result;
    }

    /// <summary>A tiny fp32 model with full SFT applied.</summary>
    public static (CausalLanguageModel Model, IParameterStrategy Strategy) FullSft(ScalarType dtype = ScalarType.Float32, ModelConfig? config = null)
    {
        var model = TinyModels.Create(config, dtype);
        var strategy = new FullSftStrategy();
        strategy.Apply(model, StrategyContext.Empty);
        return (model, strategy);
    }

    public static Trainer Trainer(CausalLanguageModel model, IParameterStrategy strategy, TrainingOptions options) =>
        new(model, strategy, Gpt2, options);

    /// <summary>Options for fast exact runs: fp32, no clipping surprises, constant schedule.</summary>
    public static TrainingOptions Fast { get; } = new()
    {
        BatchSize = 2,
        MaxSequenceLength = 32,
        LogEverySteps = 1,
        Optimizer = new global::FineTuning.Core.Optimizers.OptimizerOptions { LearningRate = 1e-2, WeightDecay = 0.01 },
        Schedule = new ScheduleOptions { Kind = ScheduleKind.Linear, WarmupSteps = 1 },
    };

    /// <summary>Runs forward and backward of the mean next-token loss; returns it and copies of the gradients, which are then cleared.</summary>
    public static (double Loss, Dictionary<string, Tensor> Gradients) Gradients(CausalLanguageModel model, CollatedBatch batch)
    {
        double loss;
        using (var scope = NewDisposeScope())
        {
            var mean = Evaluation.NextTokenLoss.Sum(model, batch) / batch.TargetCount;
            mean.backward();
            loss = mean.item<float>();
        }

        var grads = model.named_parameters().Where(p => p.parameter.grad is not null)
            .ToDictionary(p => p.name, p => p.parameter.grad!.clone().DetachFromDisposeScope());
        ClearGradients(model);
        return (loss, grads);
    }

    public static void ClearGradients(nn.Module model)
    {
        foreach (var p in model.parameters())
        {
            p.grad = null;
        }
    }

    /// <summary>Asserts two sets of gradients (or weights) are equal within a tolerance, naming the first that differs.</summary>
    public static void AssertClose(Dictionary<string, Tensor> expected, Dictionary<string, Tensor> actual, double rtol, double atol)
    {
        Xunit.Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (name, t) in expected)
        {
            Xunit.Assert.True(t.allclose(actual[name], rtol: rtol, atol: atol), $"{name}: max diff {(t - actual[name]).abs().max().item<float>()}");
        }
    }

    /// <summary>Copies of every parameter, by name.</summary>
    public static Dictionary<string, Tensor> Snapshot(nn.Module model)
    {
        using var _ = no_grad();
        return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>A token source cancelled by the progress report of the given step.</summary>
    public static CancellationTokenSource CancelAtStep(int step, out IProgress<TrainingProgress> progress)
    {
        var source = new CancellationTokenSource();
        progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.Step == step)
            {
                source.Cancel();
            }
        });
        return source;
    }

    public static void AssertSameWeights(Dictionary<string, Tensor> expected, nn.Module model) =>
        AssertClose(expected, Snapshot(model), rtol: 0, atol: 0);
}

/// <summary>An <see cref="IProgress{T}"/> that runs its handler immediately on the reporting thread.</summary>
internal sealed class SyncProgress<T>(Action<T> handler) : IProgress<T>
{
    public void Report(T value) => handler(value);
}
