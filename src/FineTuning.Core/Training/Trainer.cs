using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tokenization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTuning.Core.Training;

/// <summary>
/// Trains the parameters a strategy exposes with AdamW on a causal language-modelling loss: tokenisation, batching
/// (or packing), gradient accumulation, clipping, learning-rate schedule, evaluation, early stopping, checkpoints,
/// resume and progress all happen here, in one loop.
/// </summary>
/// <remarks>
/// <para>
/// One optimizer step: the next <see cref="TrainingOptions.GradientAccumulationSteps"/> micro-batches of
/// <see cref="TrainingOptions.BatchSize"/> rows → forward (fp32 logits and loss) → loss summed over target tokens
/// and divided by the target tokens of the whole step (so accumulation equals a bigger batch) → backward → clip the
/// global gradient norm → AdamW step (weight decay on matrices only; fp32 master copies and fp32 state for bf16 or
/// fp16 parameters) → learning rate from <see cref="LearningRateSchedule"/> → zero gradients. Steps never span two
/// epochs; the last step of an epoch may have fewer micro-batches. Everything a micro-batch allocates lives in one
/// dispose scope.
/// </para>
/// <para>
/// <see cref="Train(IReadOnlyList{TrainingExample}, IReadOnlyList{TrainingExample}?, IProgress{TrainingProgress}?, CancellationToken)"/>
/// runs synchronously on the calling thread (dispose scopes and grad mode are per thread): call it from
/// <c>Task.Run</c> to keep a UI responsive, and give it an <see cref="IProgress{T}"/> that does not need the caller's
/// thread. Cancellation is checked before every micro-batch and during evaluation; a cancelled run returns a result
/// with <see cref="TrainingResult.Cancelled"/> set, writes no final output and leaves the last complete checkpoint as
/// it was. With the same seed, data and options a CPU run is deterministic.
/// </para>
/// </remarks>
public sealed class Trainer
{
    private readonly ITextTokenizer tokenizer;
    private readonly ILogger logger;

    /// <summary>Creates a trainer.</summary>
    /// <param name="model">The model; the strategy must already be applied to it.</param>
    /// <param name="strategy">The fine-tuning method, applied to <paramref name="model"/>, whose trainable parameters are optimised.</param>
    /// <param name="tokenizer">The tokenizer for <see cref="TrainingExample"/> data (its configuration also picks the chat template).</param>
    /// <param name="options">The training options; validated here.</param>
    /// <param name="logger">Receives progress and warnings; none when <c>null</c>.</param>
    /// <exception cref="InvalidOptionException">An option or combination of options is invalid.</exception>
    /// <exception cref="InvalidOperationException">The strategy is not applied to <paramref name="model"/>, or it trains nothing.</exception>
    public Trainer(CausalLanguageModel model, IParameterStrategy strategy, ITextTokenizer tokenizer, TrainingOptions options, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(strategy);
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!ReferenceEquals(strategy.Model, model))
        {
            throw new InvalidOperationException($"The '{strategy.Method}' strategy is not applied to this model; call its Apply(model, …) before creating the trainer.");
        }

        // A strategy that selects from the task data (ITaskDataStrategy) trains nothing until Train prepares it.
        if (strategy.TrainableParameters().Count == 0 && strategy is not ITaskDataStrategy { IsPrepared: false })
        {
            throw new InvalidOperationException($"The '{strategy.Method}' strategy exposes no trainable parameter.");
        }

        if (options.Packing && model.InputEmbeddingsHook is not null)
        {
            throw new InvalidOptionException($"{nameof(TrainingOptions)}.{nameof(TrainingOptions.Packing)}", $"the '{strategy.Method}' method prepends virtual tokens to every row, and a packed row (several examples in one row) cannot give each example its own; turn packing off.");
        }

        Model = model;
        Strategy = strategy;
        Options = options;
        this.tokenizer = tokenizer;
        this.logger = logger ?? NullLogger.Instance;
    }

    /// <summary>The model being trained.</summary>
    public CausalLanguageModel Model { get; }

    /// <summary>The fine-tuning method.</summary>
    public IParameterStrategy Strategy { get; }

    /// <summary>The options.</summary>
    public TrainingOptions Options { get; }

    /// <summary>
    /// Tokenises the examples with the chat template of <see cref="TrainingOptions.ChatTemplate"/> (or the one the
    /// tokenizer's configuration names, or chatml), truncating each to <see cref="TrainingOptions.MaxSequenceLength"/>,
    /// then trains on them.
    /// </summary>
    /// <param name="trainData">The training examples.</param>
    /// <param name="evalData">Validation examples, evaluated every <see cref="TrainingOptions.EvalEverySteps"/> steps or after each epoch; <c>null</c> for none.</param>
    /// <param name="progress">Receives a report every <see cref="TrainingOptions.LogEverySteps"/> steps and at the end; called on the training thread.</param>
    /// <param name="cancellationToken">Stops the run between micro-batches.</param>
    /// <returns>What the run did.</returns>
    /// <exception cref="ArgumentException">No training example has a target token, or a token id is outside the model's vocabulary.</exception>
    public TrainingResult Train(IReadOnlyList<TrainingExample> trainData, IReadOnlyList<TrainingExample>? evalData = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainData);
        var formatter = new ExampleFormatter(tokenizer, ChatTemplates.Resolve(Options.ChatTemplate, tokenizer.Config), new ExampleFormatterOptions { MaxSequenceLength = Options.MaxSequenceLength });
        return Train(formatter.FormatAll(trainData), evalData is null ? null : formatter.FormatAll(evalData), progress, cancellationToken);
    }

    /// <summary>Trains on examples that are already tokenised (longer ones are truncated to <see cref="TrainingOptions.MaxSequenceLength"/>).</summary>
    /// <param name="trainData">The training examples.</param>
    /// <param name="evalData">Validation examples; <c>null</c> for none.</param>
    /// <param name="progress">Receives a report every <see cref="TrainingOptions.LogEverySteps"/> steps and at the end; called on the training thread.</param>
    /// <param name="cancellationToken">Stops the run between micro-batches.</param>
    /// <returns>What the run did.</returns>
    /// <exception cref="ArgumentException">No training example has a target token, or a token id is outside the model's vocabulary.</exception>
    public TrainingResult Train(IReadOnlyList<TokenizedExample> trainData, IReadOnlyList<TokenizedExample>? evalData = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainData);
        PrepareStrategy(trainData);
        using var run = new TrainingRun(this, trainData, evalData, progress, logger, cancellationToken);
        return run.Execute();
    }

    /// <summary>
    /// Gives an unprepared <see cref="ITaskDataStrategy"/> the task data before the run (a resumed run loads the saved
    /// selection from the checkpoint instead).
    /// </summary>
    private void PrepareStrategy(IReadOnlyList<TokenizedExample> trainData)
    {
        if (Strategy is not ITaskDataStrategy { IsPrepared: false } dataDriven || Options.ResumeFrom is not null)
        {
            return;
        }

        var formatter = new ExampleFormatter(tokenizer, ChatTemplates.Resolve(Options.ChatTemplate, tokenizer.Config), new ExampleFormatterOptions { MaxSequenceLength = Options.MaxSequenceLength });
        var examples = trainData.Where(e => e is not null).Select(e => e.Truncate(Options.MaxSequenceLength)).Where(e => e.HasTargets(Options.LossOnCompletionOnly)).ToList();
        dataDriven.Prepare(new TaskData(examples, data => formatter.FormatAll(data), Options.LossOnCompletionOnly));
        if (Strategy.TrainableParameters().Count == 0)
        {
            throw new InvalidOperationException($"The '{Strategy.Method}' strategy selected no trainable parameter from the task data.");
        }
    }

    /// <summary>The newest complete checkpoint in an output directory, or <c>null</c> when there is none.</summary>
    /// <param name="outputDirectory">A previous run's <see cref="TrainingOptions.OutputDirectory"/>.</param>
    /// <returns>The <c>checkpoint-{step}</c> folder, or <c>null</c>.</returns>
    public static string? FindLatestCheckpoint(string outputDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        return TrainingCheckpoints.List(outputDirectory).LastOrDefault();
    }
}
