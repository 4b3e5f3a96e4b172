using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using TorchSharp;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune inspect &lt;model-dir&gt;</c>: the config summary, then PEFT's parameter line as the last line.
/// A folder with only config.json is counted on the meta device (no memory). With <c>--method</c> the method is
/// applied first, so the line shows what would train (e.g. <c>--method lora --r 8 --targets q_proj,v_proj</c>). A 4-bit
/// model (a "-bnb-4bit" folder, or <c>--method qlora</c>) also gets a <c>quantization:</c> line; its 4-bit projections
/// count as in·out parameters, as PEFT counts them.
/// </summary>
internal sealed class InspectCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>(MethodOptions.FlagNames);

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        var strategy = MethodOptions.Read(commandLine, required: false);
        var taskData = commandLine.String("data");
        commandLine.RejectUnknown(1);

        var config = ModelConfig.Load(Path.Combine(directory, "config.json"));
        output.WriteLine(config.Describe());
        var hasWeights = HuggingFaceModel.HasWeights(directory);
        using var model = hasWeights
            ? HuggingFaceModel.Load(directory, new ModelLoadOptions { Device = device, DType = dtype })
            : CausalLanguageModel.Create(config, torch.META, dtype ?? config.DefaultScalarType);
        output.WriteLine(hasWeights ? $"weights: loaded on {device}" : "weights: none (counted on the meta device)");
        if (strategy is not null)
        {
            var applied = strategy();
            // Loaded weights may need the tokenizer (prompt tuning's text init copies the text's token embeddings).
            applied.Apply(model, hasWeights ? new StrategyContext { Tokenizer = FineTuning.Core.Tokenization.TokenizerLoader.Load(directory) } : StrategyContext.Empty);
            if (applied is ITaskDataStrategy { IsPrepared: false } dataDriven)
            {
                PrepareFromData(dataDriven, directory, taskData);
            }

            output.WriteLine($"method: {applied.Method}");
        }

        if (QuantizationFlags.Describe(model) is { } quantization)
        {
            output.WriteLine(quantization);
        }

        output.WriteLine(model.CountParameters().ToPeftLine());
        return 0;
    }

    /// <summary>A method that selects from the task data (OPD) scores and selects on <c>--data</c>, as training would.</summary>
    private static void PrepareFromData(ITaskDataStrategy strategy, string directory, string? dataPath)
    {
        if (dataPath is null)
        {
            throw new UsageException($"inspect --method {strategy.Method} needs --data train.jsonl: the method selects what trains from the task data.");
        }

        var tokenizer = FineTuning.Core.Tokenization.TokenizerLoader.Load(directory);
        var defaults = FineTuning.Core.Training.TrainingOptions.Default;
        var formatter = new FineTuning.Core.Data.ExampleFormatter(tokenizer, FineTuning.Core.Data.ChatTemplates.Resolve(defaults.ChatTemplate, tokenizer.Config), new FineTuning.Core.Data.ExampleFormatterOptions { MaxSequenceLength = defaults.MaxSequenceLength });
        var examples = formatter.FormatAll(FineTuning.Core.Data.JsonlDataset.Load(dataPath));
        strategy.Prepare(new TaskData(examples, data => formatter.FormatAll(data), defaults.LossOnCompletionOnly));
    }
}
