using FineTuning.Core.Optimizers;

namespace FineTuning.Core.Training;

/// <summary>Everything the shared trainer needs besides the model, the strategy and the data.</summary>
public sealed record TrainingOptions
{
    /// <summary>The defaults.</summary>
    public static TrainingOptions Default { get; } = new();

    /// <summary>Passes over the training data (ignored when <see cref="MaxSteps"/> is set).</summary>
    public int Epochs { get; init; } = 1;

    /// <summary>Stop after this many optimizer steps; <c>null</c> runs <see cref="Epochs"/> epochs.</summary>
    public int? MaxSteps { get; init; }

    /// <summary>Sequences (or packed rows) per forward pass.</summary>
    public int BatchSize { get; init; } = 4;

    /// <summary>Forward/backward passes per optimizer step; the effective batch is BatchSize × this.</summary>
    public int GradientAccumulationSteps { get; init; } = 1;

    /// <summary>Longer examples are truncated to this many tokens; packed rows have this length.</summary>
    public int MaxSequenceLength { get; init; } = 512;

    /// <summary>Clip the global gradient L2 norm to this value; <c>null</c> disables clipping.</summary>
    public double? MaxGradNorm { get; init; } = 1.0;

    /// <summary>Seeds initialisation, shuffling and dropout; the same seed on CPU gives the same run.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>Shuffle the training examples each epoch.</summary>
    public bool Shuffle { get; init; } = true;

    /// <summary>Compute the loss only on completion and assistant tokens (otherwise on every token but the first).</summary>
    public bool LossOnCompletionOnly { get; init; } = true;

    /// <summary>Pack several short examples into each row of <see cref="MaxSequenceLength"/> tokens; attention never crosses examples.</summary>
    public bool Packing { get; init; }

    /// <summary>Recompute each decoder layer's activations in backward instead of keeping them (less memory, about a third more compute).</summary>
    public bool ActivationCheckpointing { get; init; }

    /// <summary>Chat template name for chat data (see <c>ChatTemplates</c>); <c>null</c> detects it from the tokenizer or uses chatml.</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>Evaluate on the validation data every N optimizer steps; <c>null</c> evaluates at the end of each epoch.</summary>
    public int? EvalEverySteps { get; init; }

    /// <summary>Stop when the validation loss has not improved by <see cref="EarlyStoppingMinDelta"/> for this many evaluations; <c>null</c> never stops early.</summary>
    public int? EarlyStoppingPatience { get; init; }

    /// <summary>The improvement in validation loss that counts for early stopping.</summary>
    public double EarlyStoppingMinDelta { get; init; }

    /// <summary>Where checkpoints and the final result go; <c>null</c> writes nothing.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>Write a checkpoint every N optimizer steps (needs <see cref="OutputDirectory"/>); <c>null</c> writes only the final result.</summary>
    public int? CheckpointEverySteps { get; init; }

    /// <summary>
    /// Continue a run from a checkpoint: a <c>checkpoint-{step}</c> folder, or a folder holding such folders (the
    /// newest complete one is used, e.g. the previous run's <see cref="OutputDirectory"/>). The strategy's weights,
    /// the optimizer state, the data position and the random state are restored, so with the same data and options the
    /// run continues the same trajectory. <c>null</c> starts afresh.
    /// </summary>
    public string? ResumeFrom { get; init; }

    /// <summary>How many step checkpoints to keep (older ones are deleted).</summary>
    public int KeepCheckpoints { get; init; } = 2;

    /// <summary>Report progress every N optimizer steps.</summary>
    public int LogEverySteps { get; init; } = 10;

    /// <summary>The optimizer.</summary>
    public OptimizerOptions Optimizer { get; init; } = OptimizerOptions.Default;

    /// <summary>The learning-rate schedule.</summary>
    public ScheduleOptions Schedule { get; init; } = ScheduleOptions.Default;

    /// <summary>Checks every value and combination.</summary>
    /// <exception cref="InvalidOptionException">A value or combination is invalid; the message names the option.</exception>
    public void Validate()
    {
        const string prefix = nameof(TrainingOptions) + ".";
        Positive(Epochs, prefix + nameof(Epochs));
        if (MaxSteps is { } maxSteps)
        {
            Positive(maxSteps, prefix + nameof(MaxSteps));
        }

        Positive(BatchSize, prefix + nameof(BatchSize));
        Positive(GradientAccumulationSteps, prefix + nameof(GradientAccumulationSteps));
        if (MaxSequenceLength < 2)
        {
            throw new InvalidOptionException(prefix + nameof(MaxSequenceLength), $"must be at least 2, got {MaxSequenceLength}.");
        }

        if (MaxGradNorm is { } norm && !(norm > 0))
        {
            throw new InvalidOptionException(prefix + nameof(MaxGradNorm), $"must be positive (or null to disable clipping), got {norm}.");
        }

        if (EvalEverySteps is { } evalEvery)
        {
            Positive(evalEvery, prefix + nameof(EvalEverySteps));
        }

        if (EarlyStoppingPatience is { } patience)
        {
            Positive(patience, prefix + nameof(EarlyStoppingPatience));
        }

        if (!(EarlyStoppingMinDelta >= 0))
        {
            throw new InvalidOptionException(prefix + nameof(EarlyStoppingMinDelta), $"must be 0 or more, got {EarlyStoppingMinDelta}.");
        }

        if (CheckpointEverySteps is { } every)
        {
            Positive(every, prefix + nameof(CheckpointEverySteps));
            if (OutputDirectory is null)
            {
                throw new InvalidOptionException(prefix + nameof(CheckpointEverySteps), $"needs {nameof(OutputDirectory)} to be set.");
            }
        }

        if (ResumeFrom is { Length: 0 })
        {
            throw new InvalidOptionException(prefix + nameof(ResumeFrom), "must be a folder path or null.");
        }

        Positive(KeepCheckpoints, prefix + nameof(KeepCheckpoints));
        Positive(LogEverySteps, prefix + nameof(LogEverySteps));
        if (ChatTemplate is not null && !Data.ChatTemplates.Names.Contains(ChatTemplate))
        {
            throw new InvalidOptionException(prefix + nameof(ChatTemplate), $"unknown template '{ChatTemplate}'; known: {string.Join(", ", Data.ChatTemplates.Names)}.");
        }

        ArgumentNullException.ThrowIfNull(Optimizer, prefix + nameof(Optimizer));
        ArgumentNullException.ThrowIfNull(Schedule, prefix + nameof(Schedule));
        Optimizer.Validate();
        Schedule.Validate();
    }

    private static void Positive(int value, string option)
    {
        if (value <= 0)
        {
            throw new InvalidOptionException(option, $"must be positive, got {value}.");
        }
    }
}
