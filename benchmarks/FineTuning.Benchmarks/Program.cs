using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using FineTuning.Benchmarks;

// Usage: dotnet run -c Release --project benchmarks/FineTuning.Benchmarks -- --filter '*' [--quick]
//   --quick  one cold iteration per case (a smoke run, numbers not meaningful)
var quick = args.Contains("--quick");
var rest = args.Where(a => a != "--quick").ToArray();

// Sized for a 2-core machine: one process per case, a few warm-up and measured iterations.
var job = quick
    ? Job.Dry.WithId("Quick")
    : Job.Default.WithId("Short").WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(6);

// Each case runs in a child process built from a generated project; make that build patch
// TorchSharp's native library for older libstdc++ too (see Directory.Build.targets).
job = job.WithArguments([new MsBuildArgument("/p:ShipsTorchBackend=true")]);

var config = DefaultConfig.Instance
    .AddJob(job.AsDefault())
    .AddDiagnoser(MemoryDiagnoser.Default)
    .AddDiagnoser(new PeakRssDiagnoser())
    .WithOptions(ConfigOptions.JoinSummary);

BenchmarkSwitcher.FromAssembly(typeof(PeakRssDiagnoser).Assembly).Run(rest, config);
