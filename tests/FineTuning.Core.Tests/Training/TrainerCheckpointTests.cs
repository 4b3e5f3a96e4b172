using System.Security.Cryptography;
using System.Text.Json;
using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Training;
using Xunit;

namespace FineTuning.Core.Tests.Training;

public class TrainerCheckpointTests
{
    private static readonly List<TokenizedExample> Data = TrainingData.Examples(10, seed: 5);
    private static readonly List<TokenizedExample> Eval = TrainingData.Examples(3, seed: 50);

    // 10 examples, batch 2, accumulation 2: 3 steps per epoch (the last with one micro-batch), 2 epochs = 6 steps.
    private static TrainingOptions Options(string output) => TrainingData.Fast with
    {
        Epochs = 2,
        GradientAccumulationSteps = 2,
        OutputDirectory = output,
        CheckpointEverySteps = 2,
        KeepCheckpoints = 2,
        Schedule = new ScheduleOptions { Kind = ScheduleKind.Cosine, WarmupSteps = 2 },
    };

    private static (CausalLanguageModel, IParameterStrategy) Create(bool fullSft)
    {
        if (fullSft)
        {
            return TrainingData.FullSft();
        }

        var model = TinyModels.Create();
        var strategy = SubsetStrategy.NormsOnly();
        strategy.Apply(model, StrategyContext.Empty);
        return (model, strategy);
    }

    [Theory]
    [InlineData(true, 3)]
    [InlineData(false, 4)]
    public void Resuming_continues_the_exact_trajectory(bool fullSft, int stopAt)
    {
        using var full = new TempDirectory();
        var (model, strategy) = Create(fullSft);
        TrainingResult expected;
        Dictionary<string, TorchSharp.torch.Tensor> expectedWeights;
        using (model)
        {
            expected = TrainingData.Trainer(model, strategy, Options(full.Path)).Train(Data, Eval);
            expectedWeights = TrainingData.Snapshot(model);
        }

        using var split = new TempDirectory();
        var (first, firstStrategy) = Create(fullSft);
        using (first)
        {
            using var cancel = TrainingData.CancelAtStep(stopAt, out var progress);
            var stopped = TrainingData.Trainer(first, firstStrategy, Options(split.Path)).Train(Data, Eval, progress, cancel.Token);
            Assert.True(stopped.Cancelled);
            Assert.Equal(stopAt, stopped.Steps);
        }

        // A fresh model (different trainable weights until the checkpoint is loaded) picks up at the last checkpoint.
        var (second, secondStrategy) = Create(fullSft);
        using (second)
        {
            using (TorchSharp.torch.no_grad())
            {
                foreach (var p in secondStrategy.TrainableParameters())
                {
                    p.Parameter.add_(0.5);
                }
            }

            var resumed = TrainingData.Trainer(second, secondStrategy, Options(split.Path) with { ResumeFrom = split.Path }).Train(Data, Eval);
            Assert.False(resumed.Cancelled);
            Assert.Equal(6, resumed.Steps);
            Assert.Equal(expected.LossHistory, resumed.LossHistory);
            Assert.Equal([3, 6], resumed.EvalLosses.Select(e => e.Step));
            Assert.Equal(expected.EvalLosses, resumed.EvalLosses);
            Assert.Equal(expected.BestEvalLoss, resumed.BestEvalLoss);
            Assert.Equal(expected.TokensSeen, resumed.TokensSeen);
            TrainingData.AssertSameWeights(expectedWeights, second);
        }
    }

    [Fact]
    public void Cancelling_leaves_the_last_checkpoint_intact_and_writes_no_final_output()
    {
        using var dir = new TempDirectory();
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var hashes = new Dictionary<string, string>();
        using var source = new CancellationTokenSource();
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            if (p.Step == 3)
            {
                foreach (var file in Directory.GetFiles(Path.Combine(dir.Path, "checkpoint-2")))
                {
                    hashes[file] = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file)));
                }

                source.Cancel();
            }
        });

        var result = TrainingData.Trainer(model, strategy, Options(dir.Path)).Train(Data, progress: progress, cancellationToken: source.Token);

        Assert.True(result.Cancelled);
        Assert.Equal(3, result.Steps);
        Assert.Null(result.OutputDirectory);
        Assert.Equal([Path.Combine(dir.Path, "checkpoint-2")], result.Checkpoints);
        Assert.Equal(["checkpoint-2"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));
        Assert.False(File.Exists(Path.Combine(dir.Path, "model.safetensors")));
        Assert.NotEmpty(hashes);
        foreach (var (file, hash) in hashes)
        {
            Assert.Equal(hash, Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(file))));
        }

        using var state = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "checkpoint-2", "trainer_state.json")));
        Assert.Equal(2, state.RootElement.GetProperty("global_step").GetInt32());
        Assert.Equal(2, state.RootElement.GetProperty("loss_history").GetArrayLength());
    }

    [Fact]
    public void A_failed_checkpoint_write_leaves_no_partial_folder()
    {
        using var dir = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = new SubsetStrategy(name => name.EndsWith("norm.weight", StringComparison.Ordinal)) { FailOnSave = 2 };
        strategy.Apply(model, StrategyContext.Empty);
        var error = Assert.Throws<IOException>(() => TrainingData.Trainer(model, strategy, Options(dir.Path)).Train(Data));
        Assert.Contains("Simulated", error.Message);
        Assert.Equal(["checkpoint-2"], Directory.GetDirectories(dir.Path).Select(Path.GetFileName));
        Assert.Equal(Path.Combine(dir.Path, "checkpoint-2"), Trainer.FindLatestCheckpoint(dir.Path));
        Assert.False(model.training);
    }

    [Fact]
    public void Keeps_the_newest_checkpoints_and_writes_the_final_output_and_summary()
    {
        using var dir = new TempDirectory();
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var result = TrainingData.Trainer(model, strategy, Options(dir.Path) with { CheckpointEverySteps = 1 }).Train(Data);

        Assert.Equal(6, result.Steps);
        Assert.Equal(["checkpoint-5", "checkpoint-6"], result.Checkpoints.Select(Path.GetFileName));
        Assert.Equal(Path.GetFullPath(dir.Path), result.OutputDirectory);
        Assert.True(File.Exists(Path.Combine(dir.Path, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(dir.Path, "config.json")));
        foreach (var checkpoint in result.Checkpoints)
        {
            Assert.True(File.Exists(Path.Combine(checkpoint, "model.safetensors")));
            Assert.True(File.Exists(Path.Combine(checkpoint, "optimizer.safetensors")));
        }

        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, "training_summary.json")));
        Assert.Equal(6, summary.RootElement.GetProperty("steps").GetInt32());
        Assert.Equal(6, summary.RootElement.GetProperty("loss_history").GetArrayLength());

        // Resuming a finished run does no more steps and reports the same history.
        var (again, againStrategy) = TrainingData.FullSft();
        using var __ = again;
        var resumed = TrainingData.Trainer(again, againStrategy, Options(dir.Path) with { ResumeFrom = dir.Path }).Train(Data);
        Assert.Equal(result.LossHistory, resumed.LossHistory);
    }

    [Fact]
    public void Resume_rejects_a_missing_checkpoint_and_another_method()
    {
        using var dir = new TempDirectory();
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var missing = Assert.Throws<InvalidOptionException>(() => TrainingData.Trainer(model, strategy, Options(dir.Path) with { ResumeFrom = dir.Path }).Train(Data));
        Assert.Equal("TrainingOptions.ResumeFrom", missing.Option);

        TrainingData.Trainer(model, strategy, Options(dir.Path) with { MaxSteps = 2 }).Train(Data);
        using var other = TinyModels.Create();
        var norms = SubsetStrategy.NormsOnly();
        norms.Apply(other, StrategyContext.Empty);
        Assert.Throws<InvalidOperationException>(() => TrainingData.Trainer(other, norms, Options(dir.Path) with { ResumeFrom = dir.Path }).Train(Data));
    }
}
