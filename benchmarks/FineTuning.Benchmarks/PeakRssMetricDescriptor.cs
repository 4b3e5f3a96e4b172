using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;

namespace FineTuning.Benchmarks;

/// <summary>
/// Describes a resident-set-size metric in bytes, which BenchmarkDotNet shows as a size column
/// (scaled to KB/MB/GB by the summary style). Two instances exist: <see cref="PeakRss"/> (VmHWM during the
/// measured run) and <see cref="RssBefore"/> (VmRSS just before it).
/// </summary>
public sealed class PeakRssMetricDescriptor : IMetricDescriptor
{
    /// <summary>Peak resident set size (VmHWM) of the benchmark process during the actual (measured) iterations.</summary>
    public static readonly PeakRssMetricDescriptor PeakRss = new(
        "PeakRss",
        "Peak RSS",
        "Peak resident set size (VmHWM) of the benchmark process during the measured iterations; native (tensor) memory included",
        priority: 0);

    /// <summary>Resident set size (VmRSS) of the benchmark process just before the measured iterations.</summary>
    public static readonly PeakRssMetricDescriptor RssBefore = new(
        "RssBefore",
        "RSS before",
        "Resident set size (VmRSS) of the benchmark process just before the measured iterations (after setup, pilot and warm-up)",
        priority: 1);

    private PeakRssMetricDescriptor(string id, string displayName, string legend, int priority)
    {
        Id = id;
        DisplayName = displayName;
        Legend = legend;
        PriorityInCategory = priority;
    }

    public string Id { get; }

    public string DisplayName { get; }

    public string Legend { get; }

    public string NumberFormat => "0.#";

    public UnitType UnitType => UnitType.Size;

    public string Unit => "B";

    public bool TheGreaterTheBetter => false;

    public int PriorityInCategory { get; }

    public bool GetIsAvailable(Metric metric) => true;
}
