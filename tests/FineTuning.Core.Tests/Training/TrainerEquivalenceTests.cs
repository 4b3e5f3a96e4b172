using FineTuning.Core.Data;
using FineTuning.Core.Training;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class TrainerEquivalenceTests
{
    private static (TrainingResult Result, Dictionary<string, Tensor> Weights) Run(TrainingOptions options, IReadOnlyList<TokenizedExample> data)
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var result = TrainingData.Trainer(model, strategy, options).Train(data);
        return (result, TrainingData.Snapshot(model));
    }

    private static void AssertClose(IReadOnlyList<double> expected, IReadOnlyList<double> actual, double tolerance)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance, $"step {i + 1}: {expected[i]} vs {actual[i]}");
        }
    }

    [Fact]
    public void Accumulating_two_micro_batches_of_two_equals_one_batch_of_four()
    {
        // Examples of different lengths and trainable counts: a per-micro-batch mean would weight them differently.
        var data = TrainingData.Examples(8, seed: 21, minLength: 3, maxLength: 14);
        var options = TrainingData.Fast with { Shuffle = false, Epochs = 2, MaxGradNorm = 0.5 };
        var big = Run(options with { BatchSize = 4, GradientAccumulationSteps = 1 }, data);
        var accumulated = Run(options with { BatchSize = 2, GradientAccumulationSteps = 2 }, data);
        Assert.Equal(4, big.Result.Steps);
        AssertClose(big.Result.LossHistory, accumulated.Result.LossHistory, 1e-5);
        TrainingData.AssertClose(big.Weights, accumulated.Weights, 0, 1e-5);
    }

    [Fact]
    public void Packing_trains_like_the_unpacked_batch_of_the_same_examples()
    {
        var data = TrainingData.Examples(4, seed: 8, minLength: 3, maxLength: 6);
        var options = TrainingData.Fast with { Shuffle = false, MaxSteps = 3, BatchSize = 4, MaxSequenceLength = 32 };
        var plain = Run(options, data);
        var packed = Run(options with { Packing = true }, data);
        AssertClose(plain.Result.LossHistory, packed.Result.LossHistory, 1e-5);

        // Adam divides by the gradient's magnitude, so components with near-zero gradients amplify rounding
        // differences; PackingTests checks the gradients themselves tightly.
        TrainingData.AssertClose(plain.Weights, packed.Weights, 0, 1e-4);
        Assert.True(packed.Result.TokensSeen == plain.Result.TokensSeen);
    }

    [Fact]
    public void Activation_checkpointing_does_not_change_training()
    {
        var data = TrainingData.Examples(6, seed: 4);
        var options = TrainingData.Fast with { MaxSteps = 4 };
        var plain = Run(options, data);
        var checkpointed = Run(options with { ActivationCheckpointing = true }, data);
        AssertClose(plain.Result.LossHistory, checkpointed.Result.LossHistory, 1e-6);
        TrainingData.AssertClose(plain.Weights, checkpointed.Weights, 0, 1e-6);
    }

    [Fact]
    public void Two_runs_with_the_same_seed_are_identical_and_another_seed_differs()
    {
        var data = TrainingData.Examples(10, seed: 2);
        var options = TrainingData.Fast with { Epochs = 2, Shuffle = true };
        var first = Run(options, data);
        var second = Run(options, data);
        Assert.Equal(first.Result.LossHistory, second.Result.LossHistory);
        TrainingData.AssertClose(first.Weights, second.Weights, 0, 0);
        var other = Run(options with { Seed = 43 }, data);
        Assert.NotEqual(first.Result.LossHistory, other.Result.LossHistory);
    }
}
