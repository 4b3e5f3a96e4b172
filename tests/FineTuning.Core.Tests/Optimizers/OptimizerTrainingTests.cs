using FineTuning.Core.Data;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Training;
using Xunit;
using Xunit.Abstractions;

namespace FineTuning.Core.Tests.Optimizers;

public class OptimizerTrainingTests(ITestOutputHelper output)
{
    private static readonly List<TokenizedExample> Data = TrainingData.Examples(10, seed: 5);

    /// <summary>Small pages and a small host budget, so training pages, spills and (8-bit) quantizes the embeddings and matrices.</summary>
    private static TrainingOptions Options(OptimizerKind kind, string folder) => TrainingData.Fast with
    {
        Epochs = 2,
        GradientAccumulationSteps = 2,
        MaxGradNorm = 1.0,
        Optimizer = TrainingData.Fast.Optimizer with
        {
            Kind = kind,
            PageSizeBytes = 4096,
            HostMemoryBudgetBytes = 32 * 1024,
            SpillDirectory = Path.Combine(folder, "spill"),
            Min8BitSize = 1024,
        },
    };

    [Theory]
    [InlineData(OptimizerKind.AdamW)]
    [InlineData(OptimizerKind.PagedAdamW)]
    [InlineData(OptimizerKind.AdamW8bit)]
    [InlineData(OptimizerKind.PagedAdamW8bit)]
    public void Training_with_each_kind_lowers_the_loss(OptimizerKind kind)
    {
        using var dir = new TempDirectory();
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var result = TrainingData.Trainer(model, strategy, Options(kind, dir.Path) with { Epochs = 4 }).Train(Data);
        output.WriteLine($"{kind}: loss {result.LossHistory[0]:f4} -> {result.LossHistory[^1]:f4}");
        Assert.Equal(12, result.Steps);
        Assert.True(result.LossHistory[^1] < result.LossHistory[0] - 0.5, string.Join(", ", result.LossHistory));
        Assert.Empty(Directory.Exists(Path.Combine(dir.Path, "spill")) ? Directory.GetFiles(Path.Combine(dir.Path, "spill")) : []);
    }

    [Theory]
    [InlineData(OptimizerKind.PagedAdamW)]
    [InlineData(OptimizerKind.PagedAdamW8bit)]
    public void Resuming_a_paged_run_continues_the_exact_trajectory(OptimizerKind kind)
    {
        using var full = new TempDirectory();
        TrainingResult expected;
        Dictionary<string, TorchSharp.torch.Tensor> expectedWeights;
        var (model, strategy) = TrainingData.FullSft();
        using (model)
        {
            expected = TrainingData.Trainer(model, strategy, Options(kind, full.Path) with { OutputDirectory = full.Path, CheckpointEverySteps = 2 }).Train(Data);
            expectedWeights = TrainingData.Snapshot(model);
        }

        using var split = new TempDirectory();
        var (first, firstStrategy) = TrainingData.FullSft();
        using (first)
        {
            using var cancel = new CancellationTokenSource();
            var progress = new SyncProgress<TrainingProgress>(p =>
            {
                if (p.Step == 5)
                {
                    cancel.Cancel();
                }
            });
            var stopped = TrainingData.Trainer(first, firstStrategy, Options(kind, split.Path) with { OutputDirectory = split.Path, CheckpointEverySteps = 2 }).Train(Data, progress: progress, cancellationToken: cancel.Token);
            Assert.True(stopped.Cancelled);
            Assert.Equal(5, stopped.Steps);
        }

        var (second, secondStrategy) = TrainingData.FullSft();
        using (second)
        {
            var resumed = TrainingData.Trainer(second, secondStrategy, Options(kind, split.Path) with { OutputDirectory = split.Path, CheckpointEverySteps = 2, ResumeFrom = Path.Combine(split.Path, "checkpoint-4") }).Train(Data);
            Assert.Equal(6, resumed.Steps);
            Assert.Equal(expected.LossHistory, resumed.LossHistory);
            TrainingData.AssertSameWeights(expectedWeights, second);
        }
    }
}
