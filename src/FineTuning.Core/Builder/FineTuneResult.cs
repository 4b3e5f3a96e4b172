using FineTuning.Core.Models;
using FineTuning.Core.Training;

namespace FineTuning.Core;

/// <summary>What a fine-tuning run produced.</summary>
/// <param name="Tuner">The tuner, holding the trained model (generate, evaluate, merge or save with it; dispose it when done).</param>
/// <param name="Training">The trainer's metrics: loss history, validation losses, tokens per second, peak memory.</param>
/// <param name="Parameters">Trainable and total parameter counts with the method applied (PEFT's line via <see cref="ParameterSummary.ToPeftLine"/>).</param>
/// <param name="OutputDirectory">Where the result was saved (adapter or full model; a full path), or <c>null</c> when nothing was saved (no output folder set, or the run was cancelled).</param>
public sealed record FineTuneResult(FineTuner Tuner, TrainingResult Training, ParameterSummary Parameters, string? OutputDirectory)
{
    /// <summary>Peak resident memory of the process during training in bytes (Linux), or <c>null</c> where unknown.</summary>
    public long? PeakMemoryBytes => Training.PeakMemoryBytes;
}
