using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Training;

/// <summary>The trainer's log messages.</summary>
internal static partial class TrainerLog
{
    [LoggerMessage(1, LogLevel.Information, "Training {Method}: {Rows} rows ({Examples} examples, {Skipped} without targets skipped), {TotalSteps} optimizer steps, {Trainable} trainable parameters")]
    public static partial void Start(ILogger logger, string method, int rows, int examples, int skipped, int totalSteps, long trainable);

    [LoggerMessage(2, LogLevel.Information, "Resuming from {Checkpoint} at step {Step}")]
    public static partial void Resume(ILogger logger, string checkpoint, int step);

    [LoggerMessage(3, LogLevel.Information, "step {Step}/{TotalSteps} epoch {Epoch:F2} loss {Loss:F4} lr {LearningRate:E3} grad_norm {GradNorm:F3} tokens/s {TokensPerSecond:F0}")]
    public static partial void Step(ILogger logger, int step, int totalSteps, double epoch, double loss, double learningRate, double gradNorm, double tokensPerSecond);

    [LoggerMessage(4, LogLevel.Information, "eval at step {Step}: loss {Loss:F4} (best {Best:F4})")]
    public static partial void Evaluated(ILogger logger, int step, double loss, double best);

    [LoggerMessage(5, LogLevel.Information, "Saved checkpoint {Path}")]
    public static partial void Checkpoint(ILogger logger, string path);

    [LoggerMessage(6, LogLevel.Warning, "Step {Step}: the gradient norm is {GradNorm}; the update was skipped")]
    public static partial void SkippedStep(ILogger logger, int step, double gradNorm);

    [LoggerMessage(7, LogLevel.Information, "Early stopping at step {Step}: no improvement for {Evaluations} evaluations")]
    public static partial void EarlyStop(ILogger logger, int step, int evaluations);

    [LoggerMessage(8, LogLevel.Information, "Training cancelled at step {Step}; the last complete checkpoint is kept")]
    public static partial void Cancelled(ILogger logger, int step);

    [LoggerMessage(9, LogLevel.Information, "Training done: {Steps} steps, loss {Loss:F4}, {Elapsed}, saved to {Output}")]
    public static partial void Done(ILogger logger, int steps, double loss, TimeSpan elapsed, string output);

    [LoggerMessage(10, LogLevel.Warning, "Resuming from {Checkpoint}: its {What} differs from this run's; the trajectory will not match an uninterrupted run")]
    public static partial void ResumeMismatch(ILogger logger, string checkpoint, string what);
}
