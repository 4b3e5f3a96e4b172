using System.Globalization;

namespace FineTuning.Benchmarks;

/// <summary>Reads memory figures of a Linux process from <c>/proc/&lt;pid&gt;/</c>.</summary>
internal static class ProcStatus
{
    /// <summary>Reads a <c>kB</c> field (for example <c>VmHWM</c> or <c>VmRSS</c>) of <c>/proc/&lt;pid&gt;/status</c>, in bytes.</summary>
    /// <returns>The value in bytes, or <c>null</c> when the file or the field cannot be read.</returns>
    public static long? ReadBytes(int pid, string field)
    {
        string[] lines;
        try
        {
            lines = File.ReadAllLines($"/proc/{pid}/status");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        var prefix = field + ":";
        foreach (var line in lines)
        {
            if (!line.StartsWith(prefix, StringComparison.Ordinal))
            {
                continue;
            }

            // Format: "VmHWM:\t  123456 kB"
            var parts = line[prefix.Length..].Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 1 && long.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var kb))
            {
                return parts.Length >= 2 && parts[1] == "kB" ? kb * 1024 : kb;
            }
        }

        return null;
    }

    /// <summary>
    /// Reads the scheduler statistics of every thread of a process (<c>/proc/&lt;pid&gt;/task/&lt;tid&gt;/schedstat</c>):
    /// the time each thread ran on a CPU and the time it was runnable but waited in a run queue for one.
    /// </summary>
    /// <returns>Both times in nanoseconds by thread id, or <c>null</c> when the process's threads cannot be listed.</returns>
    public static Dictionary<int, SchedStat>? ReadSchedStats(int pid)
    {
        var result = new Dictionary<int, SchedStat>();
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                string text;
                try
                {
                    text = File.ReadAllText(Path.Combine(task, "schedstat"));
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    continue; // the thread ended while we listed them
                }

                // Format: "<ns on cpu> <ns waiting on a run queue> <time slices>"
                var parts = text.Split([' ', '\n'], StringSplitOptions.RemoveEmptyEntries);
                if (int.TryParse(Path.GetFileName(task), NumberStyles.None, CultureInfo.InvariantCulture, out var tid)
                    && parts.Length >= 2
                    && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var onCpu)
                    && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var waiting))
                {
                    result[tid] = new SchedStat(onCpu, waiting);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        return result;
    }

    /// <summary>
    /// The run-queue wait of a process's threads between two <see cref="ReadSchedStats"/> readings, in % of their CPU
    /// time. Threads that ended in between are not counted; threads started in between count in full.
    /// </summary>
    /// <returns>The percentage, or <c>null</c> when no thread ran in between.</returns>
    public static double? RunQueueWaitPercent(IReadOnlyDictionary<int, SchedStat> before, IReadOnlyDictionary<int, SchedStat> after)
    {
        long cpu = 0, wait = 0;
        foreach (var (tid, end) in after)
        {
            var start = before.GetValueOrDefault(tid, new SchedStat(0, 0));
            cpu += end.CpuNs - start.CpuNs;
            wait += end.WaitNs - start.WaitNs;
        }

        return cpu > 0 ? 100.0 * wait / cpu : null;
    }

    /// <summary>
    /// Resets the process's peak RSS (VmHWM) to its current RSS by writing <c>5</c> to
    /// <c>/proc/&lt;pid&gt;/clear_refs</c> (Linux 4.0 or later).
    /// </summary>
    /// <returns><c>true</c> if the write succeeded.</returns>
    public static bool ResetPeak(int pid)
    {
        try
        {
            File.WriteAllText($"/proc/{pid}/clear_refs", "5");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}

/// <summary>Scheduler statistics of one thread.</summary>
/// <param name="CpuNs">Time on a CPU, in nanoseconds.</param>
/// <param name="WaitNs">Time runnable but waiting in a run queue, in nanoseconds.</param>
internal readonly record struct SchedStat(long CpuNs, long WaitNs);
