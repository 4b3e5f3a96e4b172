namespace FineTuning.Core.Training;

/// <summary>What one <see cref="Trainer"/> run did.</summary>
public sealed record TrainingResult
{
    /// <summary>Optimizer steps done, including those of a run resumed from.</summary>
    public required int Steps { get; init; }

    /// <summary>Optimizer steps the run was planned for.</summary>
    public required int TotalSteps { get; init; }

    /// <summary>The mean training loss of the last <see cref="TrainingOptions.LogEverySteps"/> steps (NaN when no step ran).</summary>
    public required double TrainLoss { get; init; }

    /// <summary>The training loss (mean per target token) of every optimizer step, from the first.</summary>
    public required IReadOnlyList<double> LossHistory { get; init; }

    /// <summary>Every evaluation, in order.</summary>
    public required IReadOnlyList<EvalLossPoint> EvalLosses { get; init; }

    /// <summary>The lowest evaluation loss, or <c>null</c> without evaluation.</summary>
    public double? BestEvalLoss { get; init; }

    /// <summary>Whether early stopping ended the run.</summary>
    public bool StoppedEarly { get; init; }

    /// <summary>Whether the cancellation token ended the run. The final output was not written; the last complete checkpoint is intact.</summary>
    public bool Cancelled { get; init; }

    /// <summary>Real (non-padding) tokens trained on, including those of a run resumed from.</summary>
    public required long TokensSeen { get; init; }

    /// <summary>Real tokens per second in this run.</summary>
    public required double TokensPerSecond { get; init; }

    /// <summary>Time spent in this run.</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>The process's peak resident memory (Linux <c>VmHWM</c>), or <c>null</c> where it is not known.</summary>
    public long? PeakMemoryBytes { get; init; }

    /// <summary>Where the final result was saved (<see cref="TrainingOptions.OutputDirectory"/>), or <c>null</c> when nothing was saved.</summary>
    public string? OutputDirectory { get; init; }

    /// <summary>The step checkpoints present at the end, oldest first.</summary>
    public IReadOnlyList<string> Checkpoints { get; init; } = [];
}
