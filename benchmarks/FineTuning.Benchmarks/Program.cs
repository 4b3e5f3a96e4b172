using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Perfolizer.Metrology;
using FineTuning.Benchmarks;

// Usage: dotnet run -c Release --project benchmarks/FineTuning.Benchmarks -- --filter '*' [--quick]
//   --quick  one cold iteration per case (a smoke run, numbers not meaningful)
var quick = args.Contains("--quick");
var rest = args.Where(a => a != "--quick").ToArray();

// Sized for a 2-core machine: one process per case, a few warm-up and measured iterations.
var job = quick
    ? Job.Dry.WithId("Quick")
    : Job.Default.WithId("Short").WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(10);

// Each case runs in a child process built from a project BenchmarkDotNet generates under bin/. That project
// opts out of Directory.Build.props/.targets, and its build copies the unpatched libLibTorchSharp.so from the
// NuGet package over the patched one, so the child cannot load TorchSharp on Debian 12 / Ubuntu 22.04.
// Global properties override the generated project's own, so turn the import of Directory.Build.targets
// back on and let its post-build step (eng/torchsharp-compat.sh) patch the generated output as well.
if (FindRepoRoot() is { } repoRoot)
{
    job = job.WithArguments(
    [
        new MsBuildArgument("/p:ImportDirectoryBuildTargets=true"),
        new MsBuildArgument("/p:ShipsTorchBackend=true"),
        new MsBuildArgument($"/p:RepoRoot={repoRoot}"),
    ]);
}

var config = DefaultConfig.Instance
    .AddJob(job.AsDefault())
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddDiagnoser(new PeakRssDiagnoser())
    // On a shared 2-core machine other load inflates single iterations a lot; the minimum is the most robust estimate.
    .AddColumn(StatisticColumn.Min)
    .WithSummaryStyle(SummaryStyle.Default.WithSizeUnit(SizeUnit.MB)); // RSS columns comparable at a glance

BenchmarkSwitcher.FromAssembly(typeof(PeakRssDiagnoser).Assembly).Run(rest, config);

// The repository root (with a trailing slash), found from the build output by looking for eng/torchsharp-compat.sh.
static string? FindRepoRoot()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
    {
        if (File.Exists(Path.Combine(dir.FullName, "eng", "torchsharp-compat.sh")))
        {
            return dir.FullName.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        }
    }

    return null;
}
