using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class TrainerTests(ITestOutputHelper output)
{
    [Fact]
    public void The_strategy_must_be_applied_to_the_model_and_options_are_validated()
    {
        using var model = TinyModels.Create();
        var strategy = new FullSftStrategy();
        Assert.Throws<InvalidOperationException>(() => TrainingData.Trainer(model, strategy, TrainingOptions.Default));
        using var other = TinyModels.Create();
        strategy.Apply(other, StrategyContext.Empty);
        Assert.Throws<InvalidOperationException>(() => TrainingData.Trainer(model, strategy, TrainingOptions.Default));
        var error = Assert.Throws<InvalidOptionException>(() => TrainingData.Trainer(other, strategy, TrainingOptions.Default with { BatchSize = 0 }));
        Assert.Equal("TrainingOptions.BatchSize", error.Option);
        Assert.Throws<InvalidOptionException>(() => TrainingData.Trainer(other, strategy, TrainingOptions.Default with { ResumeFrom = "" }));
    }

    [Fact]
    public void Data_must_fit_the_vocabulary_and_have_targets()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var trainer = TrainingData.Trainer(model, strategy, TrainingData.Fast);
        Assert.Throws<ArgumentException>(() => trainer.Train([new TokenizedExample([5, 97, 6], [true, true, true])]));
        Assert.Throws<ArgumentException>(() => trainer.Train([new TokenizedExample([5, 6, 7], [true, false, false])]));

        // GPT-2 ids do not fit a 97-token model.
        var error = Assert.Throws<ArgumentException>(() => trainer.Train([new TextExample("Hello there, general Kenobi")]));
        Assert.Contains("vocabulary of 97", error.Message);
    }

    [Fact]
    public void Early_stopping_ends_the_run_after_patience_evaluations_without_improvement()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var data = TrainingData.Examples(8, seed: 1);
        var reports = new List<TrainingProgress>();
        var options = TrainingData.Fast with { MaxSteps = 30, EvalEverySteps = 2, EarlyStoppingPatience = 2, EarlyStoppingMinDelta = 100 };
        var result = TrainingData.Trainer(model, strategy, options).Train(data, TrainingData.Examples(3, seed: 99), new SyncProgress<TrainingProgress>(reports.Add));

        // Nothing improves by 100 nats: the first evaluation sets the best, the next two exhaust the patience.
        Assert.True(result.StoppedEarly);
        Assert.Equal(6, result.Steps);
        Assert.Equal([2, 4, 6], result.EvalLosses.Select(e => e.Step));
        Assert.Equal(result.EvalLosses.Min(e => e.Loss), result.BestEvalLoss);
        Assert.Equal(result.EvalLosses[^1].Loss, reports[^1].EvalLoss);
        Assert.False(model.training);
    }

    [Fact]
    public void Evaluation_matches_the_evaluator_and_runs_after_each_epoch()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var eval = TrainingData.Examples(5, seed: 77);
        var result = TrainingData.Trainer(model, strategy, TrainingData.Fast with { Epochs = 2, BatchSize = 3 }).Train(TrainingData.Examples(6), eval);
        Assert.Equal([2, 4], result.EvalLosses.Select(e => e.Step));
        var direct = LanguageModelEvaluator.Evaluate(model, eval, trainableTokensOnly: true);
        Assert.Equal(direct.Loss, result.EvalLosses[^1].Loss, 1e-5);
    }

    [Fact]
    public void Progress_is_reported_every_n_steps_and_at_the_end()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var reports = new List<TrainingProgress>();
        var modes = new List<bool>();
        var options = TrainingData.Fast with { MaxSteps = 7, LogEverySteps = 3, Schedule = new ScheduleOptions { Kind = ScheduleKind.Constant } };
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            reports.Add(p);
            modes.Add(model.training);
        });
        var result = TrainingData.Trainer(model, strategy, options).Train(TrainingData.Examples(6), progress: progress);
        Assert.All(modes, Assert.True);
        Assert.False(model.training);
        Assert.Equal([3, 6, 7], reports.Select(r => r.Step));
        Assert.All(reports, r => Assert.Equal(7, r.TotalSteps));
        Assert.Equal(result.LossHistory.Take(3).Average(), reports[0].Loss, 12);
        Assert.Equal(result.LossHistory[6], reports[2].Loss, 12);
        Assert.Equal(1e-2, reports[0].LearningRate);
        Assert.Equal(7 / 3.0, reports[2].Epoch, 12);
        Assert.All(reports, r => Assert.True(r.TokensPerSecond > 0 && r.GradNorm > 0));
        Assert.Equal(result.LossHistory.TakeLast(3).Average(), result.TrainLoss, 12);
        Assert.True(result.TokensSeen > 0);
        if (OperatingSystem.IsLinux())
        {
            Assert.True(result.PeakMemoryBytes > 10_000_000);
        }
    }

    [Fact]
    public void Full_sft_memorises_a_small_chat_dataset()
    {
        // A 50257-token model so that GPT-2 ids fit; chat data through the chatml template. About 11 → 0.2 nats.
        var config = TinyModels.Config(tied: true) with { VocabSize = 50257 };
        var (model, strategy) = TrainingData.FullSft(config: config);
        using var _ = model;
        var data = new TrainingExample[]
        {
            new ChatExample([ChatMessage.User("What is the capital of France?"), ChatMessage.Assistant("Paris.")]),
            new ChatExample([ChatMessage.User("What colour is the sky?"), ChatMessage.Assistant("Blue, on a clear day.")]),
            new PromptCompletionExample("2 + 2 =", " 4"),
            new PromptCompletionExample("The opposite of hot is", " cold"),
        };
        var options = new TrainingOptions
        {
            Epochs = 20,
            BatchSize = 4,
            LogEverySteps = 5,
            EvalEverySteps = 20,
            Optimizer = new global::FineTuning.Core.Optimizers.OptimizerOptions { LearningRate = 2e-2 },
            Schedule = new ScheduleOptions { Kind = ScheduleKind.Constant, WarmupSteps = 2 },
        };
        var result = TrainingData.Trainer(model, strategy, options).Train(data, data);
        Assert.Equal(20, result.Steps);
        Assert.True(result.LossHistory[0] > 9, $"first loss {result.LossHistory[0]}");
        Assert.True(result.TrainLoss < 1.0 && result.LossHistory[^1] < 0.5, $"final loss {result.TrainLoss}: {string.Join(", ", result.LossHistory.Select(l => l.ToString("F2")))}");
        Assert.True(result.EvalLosses.Single().Loss < 1.0);
    }

    [Fact]
    public void A_bf16_model_trains_with_fp32_master_weights()
    {
        var (model, strategy) = TrainingData.FullSft(ScalarType.BFloat16);
        using var _ = model;
        var data = TrainingData.Examples(4, seed: 12);
        var result = TrainingData.Trainer(model, strategy, TrainingData.Fast with { Epochs = 15, BatchSize = 4 }).Train(data);
        Assert.True(result.LossHistory[^1] < result.LossHistory[0] * 0.5, string.Join(", ", result.LossHistory));
        Assert.All(model.parameters(), p => Assert.Equal(ScalarType.BFloat16, p.dtype));
    }

    [Fact]
    public void A_norm_only_strategy_changes_only_the_norms()
    {
        using var model = TinyModels.Create();
        var strategy = SubsetStrategy.NormsOnly();
        strategy.Apply(model, StrategyContext.Empty);
        var before = TrainingData.Snapshot(model);
        var result = TrainingData.Trainer(model, strategy, TrainingData.Fast with { MaxSteps = 5 }).Train(TrainingData.Examples(6));
        Assert.Equal(5, result.Steps);
        foreach (var (name, p) in model.named_parameters())
        {
            Assert.Equal(name.EndsWith("norm.weight", StringComparison.Ordinal), !p.eq(before[name]).all().item<bool>());
        }
    }

    [Fact]
    public void Native_memory_stays_flat_over_a_longer_run()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var live = new List<long>();
        var resident = new List<long>();
        var progress = new SyncProgress<TrainingProgress>(p =>
        {
            live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount);
            resident.Add(ProcessMemory.ResidentBytes() ?? 0);
        });
        var options = TrainingData.Fast with { MaxSteps = 40, GradientAccumulationSteps = 2, ActivationCheckpointing = true };
        TrainingData.Trainer(model, strategy, options).Train(TrainingData.Examples(12), TrainingData.Examples(3, seed: 3), progress);

        // After the first steps no tensor handle is left behind by a step, an evaluation or a report (one per step).
        Assert.Equal(40, live.Count);
        Assert.All(live.Skip(2), count => Assert.Equal(live[1], count));
        var growth = resident.Skip(10).Max() - resident[10];
        output.WriteLine($"live tensor handles at steps 1..40: {live[1]}..{live[^1]} (max {live.Skip(1).Max()}); resident {resident[10] >> 20} MB at step 10, growth to step 40: {growth >> 10} kB");
        Assert.True(growth < 32L << 20, $"resident memory grew by {growth >> 20} MB between steps 10 and 40");
    }
}
