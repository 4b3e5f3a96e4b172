using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Training;
using TorchSharp.Modules;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Opd.OpdTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Opd;

/// <summary>The two trainer hooks OPD needs: a strategy-supplied loss term, and selection from the task data (also on resume).</summary>
public sealed class OpdTrainerHookTests
{
    /// <summary>Trains the final norm plus one extra scalar x that only the regulariser (λ/2)(x − 3)² touches.</summary>
    private sealed class RegularizedStub : IRegularizedStrategy
    {
        public Parameter X { get; } = new(tensor(new[] { 1f }));

        public string Method => "stub";

        public CausalLanguageModel? Model { get; private set; }

        public bool SupportsMerge => false;

        public void Apply(CausalLanguageModel model, StrategyContext context)
        {
            foreach (var (name, p) in model.named_parameters())
            {
                p.requires_grad = name == "model.norm.weight";
            }

            Model = model;
        }

        public IReadOnlyList<NamedParameter> TrainableParameters() =>
            [new("model.norm.weight", Model!.named_parameters().Single(p => p.name == "model.norm.weight").parameter), new("x", X)];

        public Tensor? RegularizationLoss() => (X - 3).square().sum().mul(4.0 / 2);

        public void MergeAndUnload() => throw new NotSupportedException();

        public void Remove() => Model = null;

        public void Save(string directory)
        {
        }

        public void Load(string directory)
        {
        }
    }

    [Fact]
    public void The_trainer_adds_the_strategy_term_once_per_step()
    {
        // dR/dx = λ(x − 3) = −8 at x = 1. AdamW's first step moves by lr·m̂/(√v̂ + ε) = lr·sign(g) (bias-corrected, and
        // clipping only rescales g): x = 1 + 0.1. Without the term x has no gradient and stays 1.
        using var model = TinyModels.Create();
        var stub = new RegularizedStub();
        stub.Apply(model, StrategyContext.Empty);
        var options = TrainingData.Fast with { MaxSteps = 1, Optimizer = TrainingData.Fast.Optimizer with { LearningRate = 0.1 }, Schedule = new ScheduleOptions { Kind = ScheduleKind.Constant } };
        TrainingData.Trainer(model, stub, options).Train(TaskExamples);
        Assert.Equal(1.1f, stub.X.item<float>(), 1e-6f);
    }

    [Fact]
    public void The_trainer_lets_opd_select_from_the_task_data_and_a_resumed_run_loads_the_saved_selection()
    {
        // Task Fisher without a core set needs no general data (the anchor weighs every entry 1, as L2-SP).
        var options = Options with { ScoreKind = OpdScoreKind.TaskFisher, CoreFraction = 0, GeneralData = null };
        using var temp = new TempDirectory();
        TrainingOptions Run(string name) => TrainingData.Fast with { MaxSteps = 4, CheckpointEverySteps = 2, OutputDirectory = temp.File(name), Shuffle = true };

        using var model = TinyModels.Create();
        var strategy = new OpdStrategy(options);
        strategy.Apply(model, StrategyContext.Empty);
        Assert.False(strategy.IsPrepared);
        Assert.Empty(strategy.TrainableParameters());
        TrainingData.Trainer(model, strategy, Run("straight")).Train(TaskExamples);
        Assert.True(strategy.IsPrepared);
        Assert.Equal((long)Math.Floor(0.05 * TinySelectable), strategy.TrainableCount);
        var straight = strategy.ToDelta();

        using var again = TinyModels.Create();
        var resumed = new OpdStrategy(options);
        resumed.Apply(again, StrategyContext.Empty);
        var checkpoint = Path.Combine(temp.File("straight"), "checkpoint-2");
        TrainingData.Trainer(again, resumed, Run("resumed") with { ResumeFrom = checkpoint }).Train(TaskExamples);
        var result = resumed.ToDelta();
        Assert.Equal(straight.Tensors.Select(t => t.Name), result.Tensors.Select(t => t.Name));
        for (var i = 0; i < straight.Tensors.Count; i++)
        {
            Assert.Equal(straight.Tensors[i].Indices, result.Tensors[i].Indices);
            Assert.Equal(straight.Tensors[i].Values, result.Tensors[i].Values);
        }
    }
}
