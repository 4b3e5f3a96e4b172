using System.Globalization;

namespace FineTuning.Core.Training;

/// <summary>
/// The checkpoint folders of an output directory: <c>checkpoint-{step}/</c> holding the strategy's files,
/// <c>optimizer.safetensors</c> and <c>trainer_state.json</c>. A checkpoint is written into a hidden temporary folder
/// that is renamed into place only when complete, so a crash or cancellation never leaves a half-written one.
/// </summary>
internal static class TrainingCheckpoints
{
    /// <summary>The folder-name prefix of step checkpoints.</summary>
    public const string Prefix = "checkpoint-";

    /// <summary>The trainer-state file in a checkpoint.</summary>
    public const string StateFileName = "trainer_state.json";

    /// <summary>The optimizer-state file in a checkpoint.</summary>
    public const string OptimizerFileName = "optimizer.safetensors";

    /// <summary>The summary written next to the final output.</summary>
    public const string SummaryFileName = "training_summary.json";

    private const string TemporaryPrefix = ".tmp-" + Prefix;

    /// <summary>
    /// Writes checkpoint <paramref name="step"/>: <paramref name="write"/> fills a temporary folder, which then
    /// replaces any older folder of the same step. Afterwards only the newest <paramref name="keep"/> checkpoints remain
    /// (the new one always stays).
    /// </summary>
    /// <returns>The checkpoint folder.</returns>
    public static string Write(string outputDirectory, int step, Action<string> write, int keep)
    {
        Directory.CreateDirectory(outputDirectory);
        var target = Path.Combine(outputDirectory, Prefix + step.ToString(CultureInfo.InvariantCulture));
        var temporary = Path.Combine(outputDirectory, $"{TemporaryPrefix}{step.ToString(CultureInfo.InvariantCulture)}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(temporary);
        try
        {
            write(temporary);
            if (Directory.Exists(target))
            {
                var stale = temporary + "-old";
                Directory.Move(target, stale);
                Directory.Delete(stale, recursive: true);
            }

            Directory.Move(temporary, target);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        foreach (var old in List(outputDirectory).Where(c => c != target).SkipLast(keep - 1))
        {
            TryDelete(old);
        }

        return target;
    }

    /// <summary>The complete checkpoints of a folder (those holding a trainer state), oldest step first.</summary>
    public static IReadOnlyList<string> List(string outputDirectory)
    {
        if (!Directory.Exists(outputDirectory))
        {
            return [];
        }

        return Directory.GetDirectories(outputDirectory, Prefix + "*")
            .Select(path => (path, step: StepOf(path)))
            .Where(c => c.step is not null && File.Exists(Path.Combine(c.path, StateFileName)))
            .OrderBy(c => c.step)
            .Select(c => c.path)
            .ToList();
    }

    /// <summary>
    /// The checkpoint to resume from: <paramref name="path"/> itself when it is a checkpoint, else the newest
    /// checkpoint inside it, else <c>null</c>.
    /// </summary>
    public static string? Resolve(string path) =>
        File.Exists(Path.Combine(path, StateFileName)) ? Path.GetFullPath(path) : List(path).LastOrDefault();

    /// <summary>Deletes temporary folders left by a write that was interrupted.</summary>
    public static void RemoveIncomplete(string outputDirectory)
    {
        if (Directory.Exists(outputDirectory))
        {
            foreach (var folder in Directory.GetDirectories(outputDirectory, TemporaryPrefix + "*"))
            {
                TryDelete(folder);
            }
        }
    }

    private static int? StepOf(string path) =>
        int.TryParse(Path.GetFileName(path).AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var step) ? step : null;

    private static void TryDelete(string folder)
    {
        try
        {
            Directory.Delete(folder, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: a leftover folder is harmless and is retried on the next write.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
