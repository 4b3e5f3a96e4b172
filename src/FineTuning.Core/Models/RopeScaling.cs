namespace FineTuning.Core.Models;

/// <summary>
/// Rotary-embedding frequency scaling (<c>rope_scaling</c> in <c>config.json</c>).
/// Supported types: <c>default</c>, <c>linear</c> and <c>llama3</c> (Llama 3.1/3.2).
/// </summary>
/// <param name="RopeType">The scaling type: <c>default</c>, <c>linear</c> or <c>llama3</c>.</param>
/// <param name="Factor">The scaling factor (context extension ratio).</param>
/// <param name="LowFreqFactor">Llama 3: wavelengths longer than <c>original / low_freq_factor</c> are scaled fully.</param>
/// <param name="HighFreqFactor">Llama 3: wavelengths shorter than <c>original / high_freq_factor</c> are kept.</param>
/// <param name="OriginalMaxPositionEmbeddings">Llama 3: the context length the model was pre-trained with.</param>
public sealed record RopeScaling(
    string RopeType,
    double Factor = 1.0,
    double LowFreqFactor = 1.0,
    double HighFreqFactor = 4.0,
    int OriginalMaxPositionEmbeddings = 8192)
{
    /// <summary>The rope types this library implements.</summary>
    public static IReadOnlyList<string> SupportedTypes { get; } = ["default", "linear", "llama3"];
}
