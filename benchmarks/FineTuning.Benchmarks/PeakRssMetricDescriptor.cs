using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;

namespace FineTuning.Benchmarks;

/// <summary>
/// Describes a metric of <see cref="PeakRssDiagnoser"/>. Three instances exist: <see cref="PeakRss"/> (VmHWM during the
/// measured run) and <see cref="RssBefore"/> (VmRSS just before it), in bytes, which BenchmarkDotNet shows as size
/// columns (scaled to KB/MB/GB by the summary style), and <see cref="RunQueueWait"/>, a percentage.
/// </summary>
public sealed class PeakRssMetricDescriptor : IMetricDescriptor
{
    /// <summary>Peak resident set size (VmHWM) of the benchmark process during the actual (measured) iterations.</summary>
    public static readonly PeakRssMetricDescriptor PeakRss = new(
        "PeakRss",
        "Peak RSS",
        "Peak resident set size (VmHWM) of the benchmark process during the measured iterations; native (tensor) memory included",
        UnitType.Size,
        "B",
        priority: 0);

    /// <summary>Resident set size (VmRSS) of the benchmark process just before the measured iterations.</summary>
    public static readonly PeakRssMetricDescriptor RssBefore = new(
        "RssBefore",
        "RSS before",
        "Resident set size (VmRSS) of the benchmark process just before the measured iterations (after setup, pilot and warm-up)",
        UnitType.Size,
        "B",
        priority: 1);

    /// <summary>
    /// Time the benchmark process's threads spent runnable but waiting for a CPU during the measured iterations, as a
    /// percentage of the time they ran: near 0 on an otherwise idle machine, large when other processes took the cores.
    /// </summary>
    public static readonly PeakRssMetricDescriptor RunQueueWait = new(
        "RunQueueWait",
        "CPU wait %",
        "Time the process's threads waited in a run queue during the measured iterations, in % of the time they ran (/proc/<pid>/task/*/schedstat); high = other load, the case's times are inflated",
        UnitType.Dimensionless,
        "%",
        priority: 2);

    private PeakRssMetricDescriptor(string id, string displayName, string legend, UnitType unitType, string unit, int priority)
    {
        Id = id;
        DisplayName = displayName;
        Legend = legend;
        UnitType = unitType;
        Unit = unit;
        PriorityInCategory = priority;
    }

    public string Id { get; }

    public string DisplayName { get; }

    public string Legend { get; }

    public string NumberFormat => "0.#";

    public UnitType UnitType { get; }

    public string Unit { get; }

    public bool TheGreaterTheBetter => false;

    public int PriorityInCategory { get; }

    public bool GetIsAvailable(Metric metric) => true;
}
