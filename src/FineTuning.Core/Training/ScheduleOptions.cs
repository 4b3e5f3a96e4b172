namespace FineTuning.Core.Training;

/// <summary>The learning-rate schedule: a linear warmup from 0, then <see cref="Kind"/>; see <see cref="LearningRateSchedule"/> for the formulas.</summary>
public sealed record ScheduleOptions
{
    /// <summary>The defaults: linear decay, no warmup.</summary>
    public static ScheduleOptions Default { get; } = new();

    /// <summary>The shape after warmup.</summary>
    public ScheduleKind Kind { get; init; } = ScheduleKind.Linear;

    /// <summary>Warmup length in optimizer steps; when <c>null</c>, <see cref="WarmupRatio"/> of all steps.</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>Warmup length as a share of all optimizer steps, rounded up (used when <see cref="WarmupSteps"/> is <c>null</c>).</summary>
    public double WarmupRatio { get; init; }

    /// <summary>The final learning rate as a share of the peak for linear and cosine (0 = decay to zero).</summary>
    public double MinLearningRateRatio { get; init; }

    /// <summary>Checks every value.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range.</exception>
    public void Validate()
    {
        const string prefix = nameof(ScheduleOptions) + ".";
        if (WarmupSteps is < 0)
        {
            throw new InvalidOptionException(prefix + nameof(WarmupSteps), $"must be 0 or more, got {WarmupSteps}.");
        }

        if (WarmupRatio is < 0 or >= 1 || double.IsNaN(WarmupRatio))
        {
            throw new InvalidOptionException(prefix + nameof(WarmupRatio), $"must be in [0, 1), got {WarmupRatio}.");
        }

        if (MinLearningRateRatio is < 0 or > 1 || double.IsNaN(MinLearningRateRatio))
        {
            throw new InvalidOptionException(prefix + nameof(MinLearningRateRatio), $"must be in [0, 1], got {MinLearningRateRatio}.");
        }
    }
}
