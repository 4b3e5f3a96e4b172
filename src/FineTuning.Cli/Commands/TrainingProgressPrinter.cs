using System.Globalization;
using FineTuning.Core.Training;

namespace FineTuning.Cli.Commands;

/// <summary>
/// Shows training progress: a single redrawn bar when writing to a terminal, one plain line per report when
/// the stream is redirected (logs, CI).
/// </summary>
internal sealed class TrainingProgressPrinter(TextWriter writer, bool interactive) : IProgress<TrainingProgress>
{
    private const int BarWidth = 30;
    private bool barDrawn;

    public void Report(TrainingProgress value)
    {
        var line = Describe(value);
        if (!interactive)
        {
            writer.WriteLine(line);
            return;
        }

        var filled = value.TotalSteps > 0 ? (int)Math.Round(BarWidth * (double)value.Step / value.TotalSteps) : 0;
        var bar = new string('#', Math.Clamp(filled, 0, BarWidth)).PadRight(BarWidth, '.');
        writer.Write($"\r[{bar}] {line}   ");
        barDrawn = true;
        if (value.Step >= value.TotalSteps)
        {
            Finish();
        }
    }

    /// <summary>Ends the bar's line so later output starts on a fresh line.</summary>
    public void Finish()
    {
        if (barDrawn)
        {
            writer.WriteLine();
            barDrawn = false;
        }
    }

    internal static string Describe(TrainingProgress p)
    {
        var eval = p.EvalLoss is { } e ? string.Create(CultureInfo.InvariantCulture, $" eval_loss {e:F4}") : "";
        var eta = p.EstimatedRemaining is { } r ? $" eta {r:hh\\:mm\\:ss}" : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"step {p.Step}/{p.TotalSteps} epoch {p.Epoch:F2} loss {p.Loss:F4} lr {p.LearningRate:E2} {p.TokensPerSecond:F0} tok/s{eta}{eval}");
    }
}
