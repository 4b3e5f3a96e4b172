using System.Globalization;

namespace FineTuning.Core.Training;

/// <summary>The process's resident memory as Linux reports it in <c>/proc/self/status</c>.</summary>
internal static class ProcessMemory
{
    /// <summary>The peak resident set size (<c>VmHWM</c>) in bytes, or <c>null</c> where unknown.</summary>
    public static long? PeakResidentBytes() => Read("VmHWM:");

    /// <summary>The current resident set size (<c>VmRSS</c>) in bytes, or <c>null</c> where unknown.</summary>
    public static long? ResidentBytes() => Read("VmRSS:");

    private static long? Read(string key)
    {
        const string path = "/proc/self/status";
        if (!OperatingSystem.IsLinux() || !File.Exists(path))
        {
            return null;
        }

        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith(key, StringComparison.Ordinal))
            {
                var parts = line[key.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var kilobytes) ? kilobytes * 1024 : null;
            }
        }

        return null;
    }
}
