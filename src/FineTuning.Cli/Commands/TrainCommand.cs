using System.Globalization;
using FineTuning.Core;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Training;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune train &lt;model-dir&gt; --data train.jsonl [--eval eval.jsonl] --method sft|lora|qlora|prompt|prefix|adapters|opd … --out &lt;dir&gt;</c>:
/// fine-tunes with the shared trainer and writes the result (an adapter folder for LoRA and QLoRA, a model folder for
/// SFT). <c>--optimizer adamw|paged-adamw|adamw-8bit|paged-adamw-8bit</c> picks the optimizer for any method.
/// </summary>
internal sealed class TrainCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>(MethodOptions.FlagNames.Concat(["packing", "gradient-checkpointing", "all-tokens"]));

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var data = commandLine.String("data") ?? throw new UsageException("train needs --data train.jsonl.");
        var eval = commandLine.String("eval");
        var outputDirectory = commandLine.String("out") ?? throw new UsageException("train needs --out <dir>.");
        var strategy = MethodOptions.Read(commandLine, required: true)!;
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        var training = ReadTraining(commandLine) with { OutputDirectory = outputDirectory };
        commandLine.RejectUnknown(1);

        var builder = FineTuner.Create().WithModel(directory).WithDevice(device).WithStrategy(strategy).WithTraining(training)
            .WithOptimizer(training.Optimizer).WithSchedule(training.Schedule);
        if (dtype is { } type)
        {
            builder.WithDType(type);
        }

        using var tuner = builder.Build();
        // A method that selects from the task data (OPD) knows its trainable count only once training starts.
        var selectsFromData = tuner.Strategy is FineTuning.Core.Strategies.ITaskDataStrategy { IsPrepared: false };
        if (!selectsFromData)
        {
            output.WriteLine(tuner.Parameters.ToPeftLine());
        }

        var printer = new TrainingProgressPrinter(error, interactive: ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected);
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            var result = tuner.Train(data, eval, printer, cancel.Token);
            printer.Finish();
            if (selectsFromData)
            {
                output.WriteLine(result.Parameters.ToPeftLine());
            }

            var metrics = result.Training;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"steps: {metrics.Steps}"));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"train_loss: {metrics.TrainLoss:F6}"));
            if (metrics.BestEvalLoss is { } best)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"best_eval_loss: {best:F6}"));
            }

            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"tokens_per_second: {metrics.TokensPerSecond:F1}"));
            if (metrics.PeakMemoryBytes is { } peak)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"peak_memory_mib: {peak / (1024.0 * 1024.0):F1}"));
            }

            output.WriteLine(metrics.Cancelled ? "cancelled: the last checkpoint is intact" : $"saved: {outputDirectory}");
            return metrics.Cancelled ? 130 : 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary><c>--optimizer</c>: bitsandbytes-style names for the four AdamW kinds.</summary>
    private static OptimizerKind? ParseOptimizer(string? text) => text switch
    {
        null => null,
        "adamw" => OptimizerKind.AdamW,
        "paged-adamw" => OptimizerKind.PagedAdamW,
        "adamw-8bit" => OptimizerKind.AdamW8bit,
        "paged-adamw-8bit" => OptimizerKind.PagedAdamW8bit,
        _ => throw new UsageException($"Option --optimizer expects adamw, paged-adamw, adamw-8bit or paged-adamw-8bit, got '{text}'."),
    };

    private static TrainingOptions ReadTraining(CommandLine commandLine)
    {
        var t = TrainingOptions.Default;
        var o = t.Optimizer;
        var s = t.Schedule;
        var schedule = commandLine.String("schedule");
        return t with
        {
            Epochs = commandLine.Int("epochs", 1) ?? t.Epochs,
            MaxSteps = commandLine.Int("max-steps", 1) ?? t.MaxSteps,
            BatchSize = commandLine.Int("batch-size", 1) ?? t.BatchSize,
            GradientAccumulationSteps = commandLine.Int("grad-accum", 1) ?? t.GradientAccumulationSteps,
            MaxSequenceLength = commandLine.Int("seq-len", 2) ?? t.MaxSequenceLength,
            Seed = commandLine.Long("seed") ?? t.Seed,
            MaxGradNorm = commandLine.Double("max-grad-norm") ?? t.MaxGradNorm,
            Packing = commandLine.Flag("packing"),
            ActivationCheckpointing = commandLine.Flag("gradient-checkpointing"),
            LossOnCompletionOnly = !commandLine.Flag("all-tokens"),
            ChatTemplate = commandLine.String("template"),
            EvalEverySteps = commandLine.Int("eval-every", 1),
            EarlyStoppingPatience = commandLine.Int("early-stopping", 1),
            CheckpointEverySteps = commandLine.Int("checkpoint-every", 1),
            LogEverySteps = commandLine.Int("log-every", 1) ?? t.LogEverySteps,
            ResumeFrom = commandLine.String("resume"),
            Optimizer = o with
            {
                Kind = ParseOptimizer(commandLine.String("optimizer")) ?? o.Kind,
                LearningRate = commandLine.Double("lr") ?? o.LearningRate,
                WeightDecay = commandLine.Double("weight-decay") ?? o.WeightDecay,
            },
            Schedule = s with
            {
                Kind = schedule is null ? s.Kind : Enum.TryParse<ScheduleKind>(schedule, ignoreCase: true, out var kind) ? kind
                    : throw new UsageException($"Option --schedule expects constant, linear or cosine, got '{schedule}'."),
                WarmupSteps = commandLine.Int("warmup-steps", 0) ?? s.WarmupSteps,
                WarmupRatio = commandLine.Double("warmup-ratio") ?? s.WarmupRatio,
            },
        };
    }
}
