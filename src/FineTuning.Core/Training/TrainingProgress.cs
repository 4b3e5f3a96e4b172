namespace FineTuning.Core.Training;

/// <summary>A progress report of <see cref="Trainer"/>, sent every <see cref="TrainingOptions.LogEverySteps"/> optimizer steps and at the end.</summary>
public sealed record TrainingProgress
{
    /// <summary>Optimizer steps done.</summary>
    public required int Step { get; init; }

    /// <summary>Optimizer steps the run will take.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>Passes over the training data so far, fractional (1.5 = halfway through the second epoch).</summary>
    public required double Epoch { get; init; }

    /// <summary>The mean training loss per target token over the steps since the previous report.</summary>
    public required double Loss { get; init; }

    /// <summary>The learning rate of the last step.</summary>
    public required double LearningRate { get; init; }

    /// <summary>The global gradient L2 norm of the last step, before clipping.</summary>
    public required double GradNorm { get; init; }

    /// <summary>Real (non-padding) tokens processed per second in this run.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Time spent training in this run (not counting earlier runs resumed from).</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>The expected time to the last step at this run's pace.</summary>
    public required TimeSpan EstimatedRemaining { get; init; }

    /// <summary>The most recent evaluation loss, or <c>null</c> before the first evaluation or without evaluation data.</summary>
    public double? EvalLoss { get; init; }
}
