namespace FineTuning.Core.Training;

/// <summary>
/// The learning rate as a pure function of the optimizer step, with Hugging Face's formulas
/// (<c>get_constant_schedule_with_warmup</c>, <c>get_linear_schedule_with_warmup</c>, <c>get_cosine_schedule_with_warmup</c>)
/// extended by a floor.
/// </summary>
/// <remarks>
/// For optimizer step s (0-based: the first update uses s = 0), T total steps and W warmup steps:
/// during warmup (s &lt; W) the multiplier is s / W, so the first update of a warmed-up run has learning rate 0, as in
/// Hugging Face. After warmup, with progress p = (s − W) / max(1, T − W) and floor m = <see cref="ScheduleOptions.MinLearningRateRatio"/>:
/// constant gives 1, linear gives m + (1 − m)(1 − p) and cosine gives m + (1 − m)·½(1 + cos πp).
/// </remarks>
public static class LearningRateSchedule
{
    /// <summary>The warmup length: <see cref="ScheduleOptions.WarmupSteps"/>, or ⌈<paramref name="totalSteps"/> × <see cref="ScheduleOptions.WarmupRatio"/>⌉.</summary>
    /// <param name="options">The schedule.</param>
    /// <param name="totalSteps">All optimizer steps of the run.</param>
    /// <returns>The number of warmup steps.</returns>
    public static int WarmupSteps(ScheduleOptions options, int totalSteps)
    {
        ArgumentNullException.ThrowIfNull(options);
        return options.WarmupSteps ?? (int)Math.Ceiling(totalSteps * options.WarmupRatio);
    }

    /// <summary>The share of the peak learning rate used by optimizer step <paramref name="step"/>.</summary>
    /// <param name="options">The schedule.</param>
    /// <param name="step">The optimizer step, from 0.</param>
    /// <param name="totalSteps">All optimizer steps of the run.</param>
    /// <returns>The multiplier, in [0, 1].</returns>
    public static double Multiplier(ScheduleOptions options, int step, int totalSteps)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        ArgumentOutOfRangeException.ThrowIfLessThan(totalSteps, 1);
        var warmup = WarmupSteps(options, totalSteps);
        if (step < warmup)
        {
            return (double)step / Math.Max(1, warmup);
        }

        if (options.Kind == ScheduleKind.Constant)
        {
            return 1.0;
        }

        var progress = Math.Min(1.0, (double)(step - warmup) / Math.Max(1, totalSteps - warmup));
        var decay = options.Kind == ScheduleKind.Cosine ? 0.5 * (1.0 + Math.Cos(Math.PI * progress)) : 1.0 - progress;
        var floor = options.MinLearningRateRatio;
        return floor + ((1.0 - floor) * decay);
    }

    /// <summary>The learning rate of optimizer step <paramref name="step"/>: <paramref name="peak"/> × <see cref="Multiplier"/>.</summary>
    /// <param name="peak">The peak learning rate.</param>
    /// <param name="options">The schedule.</param>
    /// <param name="step">The optimizer step, from 0.</param>
    /// <param name="totalSteps">All optimizer steps of the run.</param>
    /// <returns>The learning rate.</returns>
    public static double LearningRate(double peak, ScheduleOptions options, int step, int totalSteps) =>
        peak * Multiplier(options, step, totalSteps);
}
