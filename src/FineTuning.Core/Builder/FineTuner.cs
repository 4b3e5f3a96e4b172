using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core;

/// <summary>
/// A model with a fine-tuning method applied, ready to train, evaluate, save or merge. Create one with
/// <see cref="Create"/>: <c>FineTuner.Create().WithModel(dir).WithLoRA(r: 16).Train(data)</c>.
/// </summary>
public sealed class FineTuner : IDisposable
{
    private readonly bool ownsModel;
    private readonly ILogger logger;

    internal FineTuner(CausalLanguageModel model, string? modelDirectory, ITextTokenizer tokenizer, IParameterStrategy strategy, TrainingOptions options, ILogger logger)
    {
        Model = model;
        ModelDirectory = modelDirectory;
        ownsModel = modelDirectory is not null;
        Tokenizer = tokenizer;
        Strategy = strategy;
        Options = options;
        this.logger = logger;
    }

    /// <summary>Starts composing a run.</summary>
    /// <returns>A new builder.</returns>
    public static FineTunerBuilder Create() => new();

    /// <summary>The model, with the method applied.</summary>
    public CausalLanguageModel Model { get; }

    /// <summary>The base model folder, or <c>null</c> when the model was given as an object.</summary>
    public string? ModelDirectory { get; }

    /// <summary>The tokenizer.</summary>
    public ITextTokenizer Tokenizer { get; }

    /// <summary>The method.</summary>
    public IParameterStrategy Strategy { get; }

    /// <summary>The validated loop, optimizer and schedule settings.</summary>
    public TrainingOptions Options { get; }

    /// <summary>Trainable and total parameter counts as the model stands now.</summary>
    public ParameterSummary Parameters => Model.CountParameters();

    /// <summary>Trains on the examples with the shared trainer.</summary>
    /// <param name="trainData">Training examples.</param>
    /// <param name="evalData">Validation examples, or <c>null</c>.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops training after the current micro-batch; the last checkpoint stays intact.</param>
    /// <returns>The result.</returns>
    public FineTuneResult Train(IReadOnlyList<TrainingExample> trainData, IReadOnlyList<TrainingExample>? evalData = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainData);
        var trainer = new Trainer(Model, Strategy, Tokenizer, Options, logger);
        var result = trainer.Train(trainData, evalData, progress, cancellationToken);
        CompleteModelFolder(result.OutputDirectory);
        return new FineTuneResult(this, result, Parameters, result.OutputDirectory);
    }

    /// <summary>Trains on JSONL files (text, prompt/completion or chat lines).</summary>
    /// <param name="trainPath">The training file.</param>
    /// <param name="evalPath">The validation file, or <c>null</c>.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops training after the current micro-batch.</param>
    /// <returns>The result.</returns>
    public FineTuneResult Train(string trainPath, string? evalPath = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trainPath);
        var train = JsonlDataset.Load(trainPath);
        var eval = evalPath is null ? null : JsonlDataset.Load(evalPath);
        return Train(train, eval, progress, cancellationToken);
    }

    /// <summary>Mean cross-entropy and perplexity on examples, with the tuner's chat template and loss masking.</summary>
    /// <param name="examples">The examples.</param>
    /// <param name="cancellationToken">Checked between examples.</param>
    /// <returns>The evaluation.</returns>
    public EvaluationResult Evaluate(IEnumerable<TrainingExample> examples, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        var template = Options.ChatTemplate is { } name ? ChatTemplates.Get(name) : ChatTemplates.Detect(Tokenizer.Config) ?? ChatTemplates.Get(ChatTemplates.ChatMl);
        var formatter = new ExampleFormatter(Tokenizer, template, new ExampleFormatterOptions { MaxSequenceLength = Options.MaxSequenceLength });
        return LanguageModelEvaluator.Evaluate(Model, formatter.FormatAll(examples), Options.LossOnCompletionOnly, cancellationToken);
    }

    /// <summary>Saves what the method learned in its own format (a PEFT adapter folder, or a full model for full SFT).</summary>
    /// <param name="directory">The folder.</param>
    public void Save(string directory)
    {
        Strategy.Save(directory);
        CompleteModelFolder(directory);
    }

    /// <summary>
    /// Folds the method into the base weights and writes a plain Hugging Face model folder (config, weights and the
    /// base's tokenizer files). The tuner's model is merged in place and no longer carries the method.
    /// </summary>
    /// <param name="directory">The folder.</param>
    public void SaveMerged(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        if (!Strategy.SupportsMerge)
        {
            throw new NotSupportedException($"The {Strategy.Method} method cannot be merged into the base weights; save it with Save(directory).");
        }

        if (Strategy.Model is not null)
        {
            Strategy.MergeAndUnload();
        }

        HuggingFaceModel.Save(Model, directory);
        CompleteModelFolder(directory);
    }

    /// <summary>A saved model folder (not an adapter folder) gets the base's tokenizer files so it loads on its own.</summary>
    private void CompleteModelFolder(string? directory)
    {
        if (directory is not null && ModelDirectory is not null && File.Exists(Path.Combine(directory, HuggingFaceModel.ConfigFileName)))
        {
            TokenizerFiles.CopyTokenizerFiles(ModelDirectory, directory);
        }
    }

    /// <summary>Disposes the model when the tuner loaded it from a folder.</summary>
    public void Dispose()
    {
        if (ownsModel)
        {
            Model.Dispose();
        }
    }
}
