using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;

namespace FineTuning.Core.Tests.Learning;

/// <summary>The shared trainer with a LoRA strategy: resume, memory over a longer run, a bf16 base.</summary>
public class LoraTrainingTests(ITestOutputHelper output)
{
    private static readonly List<FineTuning.Core.Data.TokenizedExample> Data = TrainingData.Examples(10, seed: 5);

    // Dropout on the adapter input makes the run depend on the random state, which a resume must restore too.
    private static readonly LoraOptions Lora = new() { R = 4, Alpha = 8, Dropout = 0.1, TargetModules = LoraTargetModules.AllLinear };

    private static (CausalLanguageModel Model, LoraStrategy Strategy) Create(torch.ScalarType dtype = torch.ScalarType.Float32, LoraOptions? options = null)
    {
        var model = TinyModels.Create(dtype: dtype);
        return (model, Apply(model, options ?? Lora));
    }

    private static Dictionary<string, torch.Tensor> Adapter(LoraStrategy strategy) =>
        strategy.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter.detach().clone());

    // 10 examples, batch 2, accumulation 2: 3 steps per epoch, 2 epochs = 6 steps; a checkpoint every 2.
    private static TrainingOptions Options(string output) => TrainingData.Fast with
    {
        Epochs = 2,
        GradientAccumulationSteps = 2,
        OutputDirectory = output,
        CheckpointEverySteps = 2,
    };

    [Fact]
    public void Resuming_a_lora_run_gives_the_uninterrupted_losses_and_adapter()
    {
        using var full = new TempDirectory();
        var (model, strategy) = Create();
        TrainingResult expected;
        Dictionary<string, torch.Tensor> expectedAdapter;
        using (model)
        {
            expected = TrainingData.Trainer(model, strategy, Options(full.Path)).Train(Data);
            expectedAdapter = Adapter(strategy);
        }

        using var split = new TempDirectory();
        var (first, firstStrategy) = Create();
        using (first)
        {
            using var cancel = TrainingData.CancelAtStep(3, out var progress);
            var stopped = TrainingData.Trainer(first, firstStrategy, Options(split.Path)).Train(Data, progress: progress, cancellationToken: cancel.Token);
            Assert.True(stopped.Cancelled);
            Assert.Equal(3, stopped.Steps);
        }

        // The checkpoint is a PEFT adapter folder; a fresh model with other adapter values picks up from it.
        Assert.True(File.Exists(Path.Combine(split.Path, "checkpoint-2", PeftAdapterFiles.WeightsFileName)));
        var (second, secondStrategy) = Create();
        using (second)
        {
            using (torch.no_grad())
            {
                foreach (var p in secondStrategy.TrainableParameters())
                {
                    p.Parameter.add_(0.5);
                }
            }

            var resumed = TrainingData.Trainer(second, secondStrategy, Options(split.Path) with { ResumeFrom = split.Path }).Train(Data);
            Assert.Equal(6, resumed.Steps);
            Assert.Equal(expected.LossHistory, resumed.LossHistory);
            var adapter = Adapter(secondStrategy);
            Assert.Equal(expectedAdapter.Keys.Order(), adapter.Keys.Order());
            Assert.All(expectedAdapter, e => Assert.True(BitEqual(e.Value, adapter[e.Key]), e.Key));
        }

        var adapterFile = PeftAdapterFiles.WeightsFileName;
        Assert.Equal(File.ReadAllBytes(Path.Combine(full.Path, adapterFile)), File.ReadAllBytes(Path.Combine(split.Path, adapterFile)));
    }

    [Fact]
    public void Live_tensors_stay_flat_over_a_longer_lora_run()
    {
        var (model, strategy) = Create();
        using var _ = model;
        var live = new List<long>();
        var progress = new SyncProgress<TrainingProgress>(_ => live.Add(DisposeScopeManager.Statistics.ThreadTotalLiveCount));
        var options = TrainingData.Fast with { MaxSteps = 40, GradientAccumulationSteps = 2, EvalEverySteps = 10 };
        TrainingData.Trainer(model, strategy, options).Train(TrainingData.Examples(12), TrainingData.Examples(3, seed: 3), progress);

        // After the first steps (optimizer state created) no step, evaluation or report leaves a tensor handle behind.
        output.WriteLine($"live tensor handles at steps 1..40: {string.Join(", ", live.Distinct())}");
        Assert.Equal(40, live.Count);
        Assert.All(live.Skip(2), count => Assert.Equal(live[1], count));
    }

    [Fact]
    public void A_bf16_base_trains_fp32_adapters_and_stays_unchanged()
    {
        var (model, strategy) = Create(torch.ScalarType.BFloat16, Lora with { R = 8, Dropout = 0 });
        using var _ = model;
        var before = Snapshot(model);
        var options = TrainingData.Fast with { Epochs = 30, BatchSize = 4, Optimizer = new() { LearningRate = 2e-2 }, Schedule = new() { Kind = ScheduleKind.Constant } };
        var result = TrainingData.Trainer(model, strategy, options).Train(TrainingData.Examples(4, seed: 12));

        output.WriteLine(string.Join(", ", result.LossHistory.Select(l => l.ToString("F3"))));
        Assert.True(result.LossHistory[^1] < result.LossHistory[0] * 0.5, string.Join(", ", result.LossHistory));
        foreach (var (name, p) in model.named_parameters())
        {
            var isAdapter = name.Contains(".lora_", StringComparison.Ordinal);
            Assert.Equal(isAdapter ? torch.ScalarType.Float32 : torch.ScalarType.BFloat16, p.dtype);
            Assert.True(isAdapter != BitEqual(before[name], p), $"{name} {(isAdapter ? "did not train" : "changed")}");
        }
    }
}
