using System.Collections.Concurrent;
using BenchmarkDotNet.Analysers;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Exporters;
using BenchmarkDotNet.Loggers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Validators;

namespace FineTuning.Benchmarks;

/// <summary>
/// Measures the peak resident set size of the benchmark process during the measured iterations, which —
/// unlike <c>MemoryDiagnoser</c> — includes native memory such as TorchSharp tensors. Linux only: at
/// <see cref="HostSignal.BeforeActualRun"/> it records VmRSS and resets VmHWM (writing <c>5</c> to
/// <c>/proc/&lt;pid&gt;/clear_refs</c>); at <see cref="HostSignal.AfterActualRun"/> it reads VmHWM. It also reports how
/// long the process's threads waited for a CPU in between (<see cref="PeakRssMetricDescriptor.RunQueueWait"/>), which
/// tells a case measured on a busy machine from a clean one. On other systems it reports nothing.
/// </summary>
/// <remarks>
/// With the default out-of-process toolchain every benchmark case runs in its own process, so the peak is per
/// case. With an in-process toolchain the host process is measured, and memory that an earlier case left
/// resident (glibc rarely returns freed memory to the OS) shows up in the "RSS before" column.
/// </remarks>
public sealed class PeakRssDiagnoser : IDiagnoser
{
    private readonly ConcurrentDictionary<BenchmarkCase, Sample> samples = new();

    public IEnumerable<string> Ids => ["PeakRss"];

    public IEnumerable<IExporter> Exporters => [];

    public IEnumerable<IAnalyser> Analysers => [];

    public RunMode GetRunMode(BenchmarkCase benchmarkCase) => RunMode.NoOverhead;

    public bool RequiresBlockingAcknowledgments(BenchmarkCase benchmarkCase) => true;

    public void Handle(HostSignal signal, DiagnoserActionParameters parameters)
    {
        if (!OperatingSystem.IsLinux() || signal is not (HostSignal.BeforeActualRun or HostSignal.AfterActualRun) || parameters.Process is null)
        {
            return;
        }

        int pid;
        try
        {
            pid = parameters.Process.Id;
        }
        catch (InvalidOperationException)
        {
            return; // the process is gone or was never started
        }

        switch (signal)
        {
            case HostSignal.BeforeActualRun:
                var before = ProcStatus.ReadBytes(pid, "VmRSS");
                samples[parameters.BenchmarkCase] = new Sample(before, ProcStatus.ResetPeak(pid), null, ProcStatus.ReadSchedStats(pid), null);
                break;
            case HostSignal.AfterActualRun:
                if (samples.TryGetValue(parameters.BenchmarkCase, out var sample))
                {
                    // If the reset failed, VmHWM would include setup and warm-up: report no peak rather than a wrong one.
                    samples[parameters.BenchmarkCase] = sample with
                    {
                        Peak = sample.PeakWasReset ? ProcStatus.ReadBytes(pid, "VmHWM") : null,
                        SchedAfter = ProcStatus.ReadSchedStats(pid),
                    };
                }

                break;
        }
    }

    public IEnumerable<Metric> ProcessResults(DiagnoserResults results)
    {
        if (!samples.TryGetValue(results.BenchmarkCase, out var sample))
        {
            yield break;
        }

        if (sample.Peak is { } peak)
        {
            yield return new Metric(PeakRssMetricDescriptor.PeakRss, peak);
        }

        if (sample.Before is { } before)
        {
            yield return new Metric(PeakRssMetricDescriptor.RssBefore, before);
        }

        if (sample.SchedBefore is { } start && sample.SchedAfter is { } end && ProcStatus.RunQueueWaitPercent(start, end) is { } wait)
        {
            yield return new Metric(PeakRssMetricDescriptor.RunQueueWait, wait);
        }
    }

    public void DisplayResults(ILogger logger)
    {
        if (!OperatingSystem.IsLinux())
        {
            logger.WriteLineInfo("PeakRssDiagnoser: not on Linux, no RSS columns were measured.");
        }
    }

    public IEnumerable<ValidationError> Validate(ValidationParameters validationParameters)
    {
        if (!OperatingSystem.IsLinux())
        {
            yield return new ValidationError(false, "PeakRssDiagnoser reads /proc and only works on Linux; its columns will be empty.");
        }
    }

    private sealed record Sample(long? Before, bool PeakWasReset, long? Peak, Dictionary<int, SchedStat>? SchedBefore, Dictionary<int, SchedStat>? SchedAfter);
}
