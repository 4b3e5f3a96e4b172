using System.Diagnostics;
using FineTuning.Core.Data;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Samples;
using Xunit;
using Xunit.Abstractions;

namespace FineTuning.Core.Tests.Learning;

[Trait("Category", "Explore")]
public sealed class OpdExploreTests(WordMapBase fixture, ITestOutputHelper output) : IClassFixture<WordMapBase>
{
    [Fact]
    public void Timing()
    {
        var general = JsonlDataset.Load(WordMap.PretrainPath);
        var clock = Stopwatch.StartNew();
        using var tuner = FineTuner.Create().WithModel(fixture.Directory).WithOpd(general, OpdBudget.Of(0.1)).WithTraining(t => t with { MaxSteps = 20, BatchSize = 16 }).Build();
        output.WriteLine($"build {clock.Elapsed.TotalSeconds:F1}s");
        var strategy = (OpdStrategy)tuner.Strategy;
        var fmt = new ExampleFormatter(tuner.Tokenizer, ChatTemplates.Resolve(null, tuner.Tokenizer.Config));
        var data = fmt.FormatAll(JsonlDataset.Load(WordMap.TrainPath));
        var targets = OpdTarget.Find(tuner.Model, false);
        clock.Restart();
        OpdScorer.Accumulate(tuner.Model, targets, data.Take(16).ToList(), true);
        output.WriteLine($"accumulate 16: {clock.Elapsed.TotalSeconds:F2}s");
        clock.Restart();
        FineTuning.Core.Evaluation.LanguageModelEvaluator.Evaluate(tuner.Model, data.Take(16).ToList(), true);
        output.WriteLine($"evaluate 16: {clock.Elapsed.TotalSeconds:F2}s");
        clock.Restart();
        SparseDelta.HashModel(tuner.Model);
        output.WriteLine($"hash: {clock.Elapsed.TotalSeconds:F2}s");
        clock.Restart();
        strategy.Prepare(new FineTuning.Core.Strategies.TaskData(data, d => fmt.FormatAll(d), true));
        output.WriteLine($"prepare {clock.Elapsed.TotalSeconds:F1}s");
        clock.Restart();
        tuner.Train(JsonlDataset.Load(WordMap.TrainPath));
        output.WriteLine($"20 steps {clock.Elapsed.TotalSeconds:F1}s");
        clock.Restart();
        tuner.Save(Path.Combine(fixture.NewFolder("x")));
        output.WriteLine($"save {clock.Elapsed.TotalSeconds:F1}s");
    }

    [Theory]
    [InlineData("0.1", OpdGranularity.Element, 100, 5e-3, 1.0)]
    public void Explore(string budget, OpdGranularity granularity, int steps, double lr, double anchor)
    {
        var general = JsonlDataset.Load(WordMap.PretrainPath);
        var clock = Stopwatch.StartNew();
        var result = WordMapBase.Train(FineTuner.Create().WithModel(fixture.Directory).WithOpd(general, OpdBudget.Parse(budget), granularity, o => o with { AnchorStrength = anchor }), steps, lr, WordMap.TrainPath);
        using var tuner = result.Tuner;
        var eval = tuner.Evaluate(WordMapBase.Eval);
        var gen = tuner.Evaluate(general.Take(64));
        var strategy = (OpdStrategy)tuner.Strategy;
        output.WriteLine($"{budget} {granularity} steps {steps} lr {lr}: trainable {result.Parameters.Trainable} of {strategy.SelectableCount}; eval loss {eval.Loss:F4} exact {eval.ExactMatch:F3}; general loss {gen.Loss:F4}; base eval {fixture.BaseEval.Loss:F4}; {clock.Elapsed.TotalSeconds:F1}s");
        output.WriteLine(strategy.Report!["general_loss_before"]!.ToJsonString());
    }
}
