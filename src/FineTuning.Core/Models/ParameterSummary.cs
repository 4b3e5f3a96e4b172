using System.Globalization;

namespace FineTuning.Core.Models;

/// <summary>Trainable and total parameter counts, printed in Hugging Face PEFT's format.</summary>
/// <param name="Trainable">Elements of parameters that require gradients.</param>
/// <param name="Total">Elements of all parameters (each shared tensor counted once).</param>
public sealed record ParameterSummary(long Trainable, long Total)
{
    /// <summary>The trainable share in percent.</summary>
    public double TrainablePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    /// <summary>PEFT's line, e.g. <c>trainable params: 4,194,304 || all params: 6,742,609,920 || trainable%: 0.0622</c>.</summary>
    /// <returns>The formatted line.</returns>
    public string ToPeftLine() => string.Format(CultureInfo.InvariantCulture,
        "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}", Trainable, Total, TrainablePercent);

    /// <inheritdoc />
    public override string ToString() => ToPeftLine();
}
