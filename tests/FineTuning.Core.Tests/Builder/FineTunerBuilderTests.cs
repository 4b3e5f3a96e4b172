using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Samples;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;

namespace FineTuning.Core.Tests.Builder;

public sealed class FineTunerBuilderTests : IDisposable
{
    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    private static readonly CausalLanguageModel SmallVocabulary = TinyModels.Create();

    /// <summary>Each builder is wrong in one way; Build names the option at fault.</summary>
    private static readonly Dictionary<string, Func<CausalLanguageModel, string, FineTunerBuilder>> Invalid = new()
    {
        ["no model"] = (_, _) => FineTuner.Create().WithTokenizer(TrainingData.Gpt2).WithLoRA(),
        ["folder without config.json"] = (_, dir) => FineTuner.Create().WithModel(dir).WithLoRA(),
        ["two methods"] = (m, _) => Tiny(m).WithFullSft().WithLoRA(),
        ["rank 0"] = (m, _) => Tiny(m).WithLoRA(r: 0),
        ["negative learning rate"] = (m, _) => Tiny(m).WithLoRA().WithOptimizer(o => o with { LearningRate = -1e-4 }),
        ["warmup ratio 1.5"] = (m, _) => Tiny(m).WithSchedule(new ScheduleOptions { WarmupRatio = 1.5 }),
        ["checkpoints without output"] = (m, _) => Tiny(m).WithTraining(t => t with { CheckpointEverySteps = 10 }),
        ["tokenizer larger than the vocabulary"] = (_, _) => FineTuner.Create().WithModel(SmallVocabulary).WithTokenizer(TrainingData.Gpt2).WithLoRA(),
    };

    public static TheoryData<string, string> InvalidCases { get; } = new()
    {
        { "no model", "WithModel" },
        { "folder without config.json", "WithModel" },
        { "two methods", "WithLoRA" },
        { "rank 0", "LoraOptions.R" },
        { "negative learning rate", "OptimizerOptions.LearningRate" },
        { "warmup ratio 1.5", "ScheduleOptions.WarmupRatio" },
        { "checkpoints without output", "TrainingOptions.CheckpointEverySteps" },
        { "tokenizer larger than the vocabulary", "WithTokenizer" },
    };

    private static FineTunerBuilder Tiny(CausalLanguageModel model) => FineTuner.Create().WithModel(model).WithTokenizer(TrainingData.Gpt2);

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void Build_rejects_an_invalid_option_and_names_it(string mistake, string option)
    {
        using var model = TinyModels.Preset();
        var builder = Invalid[mistake](model, temp.Path);
        var error = Assert.Throws<InvalidOptionException>(builder.Build);
        Assert.Equal(option, error.Option);
        Assert.StartsWith(option + ": ", error.Message);

        // Nothing was applied to the model given.
        Assert.All(model.named_parameters(), p => Assert.DoesNotContain("lora_", p.name));
        Assert.All(SmallVocabulary.named_parameters(), p => Assert.DoesNotContain("lora_", p.name));
    }

    [Fact]
    public void WithLoRA_defaults_to_alpha_2r_on_q_and_v_and_no_method_means_full_sft()
    {
        using var model = TinyModels.Preset();
        using (var tuner = Tiny(model).WithLoRA(r: 4).Build())
        {
            var lora = Assert.IsType<LoraStrategy>(tuner.Strategy);
            Assert.Equal(8, lora.Options.Alpha);
            Assert.Equal(
                new[] { 0, 1 }.SelectMany(i => new[] { "q_proj", "v_proj" }.Select(m => $"model.layers.{i}.self_attn.{m}")),
                lora.LoraLayers.Keys.Order());
            Assert.All(lora.LoraLayers.Values, l => Assert.Equal((4, 8.0), (l.GetConfig(LoraStrategy.DefaultAdapterName).R, l.GetConfig(LoraStrategy.DefaultAdapterName).Alpha)));

            // Tiny preset: q_proj 64→64, v_proj 64→32 (2 KV heads of 16); r·(in + out) each, 2 layers.
            Assert.Equal(2 * 4 * ((64 + 64) + (64 + 32)), tuner.Parameters.Trainable);
            lora.Remove();
        }

        using var sft = Tiny(model).Build();
        Assert.IsType<FullSftStrategy>(sft.Strategy);
        Assert.Equal(sft.Parameters.Total, sft.Parameters.Trainable);
    }

    [Fact]
    public void Train_on_files_reports_progress_and_writes_the_adapter()
    {
        var model = TinyModels.WritePreset(temp.File("model"));
        var output = temp.File("adapter");
        var reports = new List<TrainingProgress>();
        var result = FineTuner.Create().WithModel(model).WithLoRA(r: 4).WithOutput(output)
            .WithTraining(t => t with { MaxSteps = 3, BatchSize = 8, LogEverySteps = 1 })
            .Train(WordMap.TrainPath, WordMap.EvalPath, new SyncProgress<TrainingProgress>(reports.Add));
        using var _ = result.Tuner;

        // One report per step; the last carries the validation loss of the evaluation after the last step.
        Assert.Equal([1, 2, 3], reports.Select(r => r.Step));
        Assert.All(reports, r => Assert.Equal(3, r.TotalSteps));
        Assert.Equal(3 * 8.0 / WordMap.Train.Count, reports[^1].Epoch, 12);
        Assert.Equal(3, result.Training.EvalLosses.Single().Step);
        Assert.Equal(result.Training.EvalLosses[0].Loss, reports[^1].EvalLoss);
        Assert.Equal(Path.GetFullPath(output), result.OutputDirectory);
        Assert.True(File.Exists(Path.Combine(output, LoraAdapterConfig.FileName)));
        Assert.True(File.Exists(Path.Combine(output, PeftAdapterFiles.WeightsFileName)));
        Assert.False(File.Exists(Path.Combine(output, TokenizerLoader.TokenizerJsonFileName)));
    }

    [Fact]
    public void SaveMerged_writes_a_model_folder_with_tokenizer_files_that_reloads_to_the_same_outputs()
    {
        var model = TinyModels.WritePreset(temp.File("model"));
        var merged = temp.File("merged");
        using var tuner = FineTuner.Create().WithModel(model).WithLoRA(r: 4, targets: ["all-linear"])
            .WithOptimizer(o => o with { LearningRate = 1e-2 })
            .WithTraining(t => t with { MaxSteps = 3, BatchSize = 8 })
            .Train(WordMap.TrainPath)
            .Tuner;
        using var adapted = Logits(tuner.Model);
        tuner.SaveMerged(merged);

        foreach (var file in new[] { HuggingFaceModel.ConfigFileName, HuggingFaceWeights.SingleFileName, TokenizerLoader.TokenizerJsonFileName, TokenizerLoader.TokenizerConfigFileName })
        {
            Assert.True(File.Exists(Path.Combine(merged, file)), file);
        }

        Assert.Equal(TrainingData.Gpt2.Encode("map red blue green ="), TokenizerLoader.Load(merged).Encode("map red blue green ="));
        using var reloaded = HuggingFaceModel.Load(merged);
        using var original = HuggingFaceModel.Load(model);
        using var reloadedLogits = Logits(reloaded);
        using var originalLogits = Logits(original);
        Assert.True(MaxDiff(adapted, reloadedLogits) < 1e-4, $"merged differs by {MaxDiff(adapted, reloadedLogits)}");
        Assert.True(MaxDiff(adapted, originalLogits) > 1e-3, "the adapter changed nothing");
    }

    [Fact]
    public void Cancelling_returns_a_cancelled_result_without_output()
    {
        var output = temp.File("out");
        using var model = TinyModels.Preset();
        using var cancel = TrainingData.CancelAtStep(2, out var progress);
        var result = Tiny(model).WithLoRA(r: 4).WithOutput(output)
            .WithTraining(t => t with { MaxSteps = 50, BatchSize = 4, LogEverySteps = 1 })
            .Train(WordMap.Train, progress: progress, cancellationToken: cancel.Token);

        Assert.True(result.Training.Cancelled);
        Assert.Equal(2, result.Training.Steps);
        Assert.Null(result.OutputDirectory);
        Assert.False(File.Exists(Path.Combine(output, PeftAdapterFiles.WeightsFileName)));

        // A token cancelled up front trains nothing.
        using var other = TinyModels.Preset();
        var none = Tiny(other).WithLoRA(r: 4).Train(WordMap.Train, cancellationToken: new CancellationToken(canceled: true));
        Assert.True(none.Training.Cancelled);
        Assert.Equal(0, none.Training.Steps);
    }
}
