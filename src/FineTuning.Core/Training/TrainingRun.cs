using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Strategies;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace FineTuning.Core.Training;

/// <summary>One call of <see cref="Trainer.Train(IReadOnlyList{TokenizedExample}, IReadOnlyList{TokenizedExample}?, IProgress{TrainingProgress}?, CancellationToken)"/>: the training loop and everything it keeps.</summary>
internal sealed class TrainingRun : IDisposable
{
    private readonly CausalLanguageModel model;
    private readonly IParameterStrategy strategy;
    private readonly TrainingOptions options;
    private readonly ILogger logger;
    private readonly IProgress<TrainingProgress>? progress;
    private readonly CancellationToken cancellationToken;
    private readonly IReadOnlyList<PackedRow> rows;
    private readonly IReadOnlyList<TokenizedExample>? evalExamples;
    private IOptimizer? optimizer;
    private readonly int microBatchesPerEpoch;
    private readonly int totalSteps;
    private readonly int skippedExamples;
    private readonly int exampleCount;
    private readonly string fingerprint;
    private readonly Stopwatch clock = new();
    private TrainerState state = new();
    private double earlierSeconds;
    private long runTokens;
    private int runSteps;
    private int lastReportedStep;
    private int orderEpoch = -1;
    private int[] order = [];

    public TrainingRun(Trainer trainer, IReadOnlyList<TokenizedExample> trainData, IReadOnlyList<TokenizedExample>? evalData, IProgress<TrainingProgress>? progress, ILogger logger, CancellationToken cancellationToken)
    {
        model = trainer.Model;
        strategy = trainer.Strategy;
        options = trainer.Options;
        this.logger = logger;
        this.progress = progress;
        this.cancellationToken = cancellationToken;

        var examples = Prepare(trainData, nameof(trainData));
        exampleCount = examples.Count;
        skippedExamples = trainData.Count - examples.Count;
        if (examples.Count == 0)
        {
            throw new ArgumentException($"None of the {trainData.Count} training examples has a token to learn (each needs two tokens{(options.LossOnCompletionOnly ? " and a trainable one after the first" : "")}).", nameof(trainData));
        }

        if (evalData is not null)
        {
            evalExamples = Prepare(evalData, nameof(evalData));
            if (evalExamples.Count == 0)
            {
                throw new ArgumentException($"None of the {evalData.Count} evaluation examples has a token to score.", nameof(evalData));
            }
        }

        rows = options.Packing ? SequencePacker.Pack(examples, options.MaxSequenceLength) : examples.Select(PackedRow.Single).ToList();
        fingerprint = Fingerprint(rows);
        microBatchesPerEpoch = (rows.Count + options.BatchSize - 1) / options.BatchSize;
        var stepsPerEpoch = (microBatchesPerEpoch + options.GradientAccumulationSteps - 1) / options.GradientAccumulationSteps;
        totalSteps = options.MaxSteps ?? checked(options.Epochs * stepsPerEpoch);
    }

    public TrainingResult Execute()
    {
        var wasTraining = model.training;
        var previousRunner = model.LayerRunner;
        if (options.OutputDirectory is { } output)
        {
            TrainingCheckpoints.RemoveIncomplete(output);
        }

        Start();
        model.train();
        if (options.ActivationCheckpointing)
        {
            model.LayerRunner = ActivationCheckpointing.Runner;
        }

        clock.Start();
        try
        {
            var stoppedEarly = false;
            while (state.GlobalStep < totalSteps && !stoppedEarly)
            {
                if (!TrainStep())
                {
                    return Finish(cancelled: true, stoppedEarly: false);
                }

                // The last step is evaluated (before its report, so that report carries the final validation loss);
                // only a scheduled evaluation can stop the run early.
                var epochEnded = state.MicroBatchInEpoch == microBatchesPerEpoch;
                var scheduled = options.EvalEverySteps is { } every ? state.GlobalStep % every == 0 : epochEnded;
                if (evalExamples is not null && (scheduled || state.GlobalStep == totalSteps))
                {
                    stoppedEarly = Evaluate() && scheduled;
                }

                if (state.GlobalStep % options.LogEverySteps == 0)
                {
                    Report();
                }

                if (options.CheckpointEverySteps is { } interval && state.GlobalStep % interval == 0)
                {
                    SaveCheckpoint();
                }
            }

            var finalEvaluation = evalExamples is not null && (state.EvalLosses.Count == 0 || state.EvalLosses[^1].Step != state.GlobalStep);
            if (finalEvaluation)
            {
                Evaluate();
            }

            if (finalEvaluation || lastReportedStep != state.GlobalStep)
            {
                Report();
            }

            return Finish(cancelled: false, stoppedEarly);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return Finish(cancelled: true, stoppedEarly: false);
        }
        finally
        {
            clock.Stop();
            optimizer?.ZeroGrad();
            model.LayerRunner = previousRunner;
            model.train(wasTraining);
        }
    }

    public void Dispose() => optimizer?.Dispose();

    /// <summary>The optimizer, created by <see cref="Start"/> once the strategy state is loaded.</summary>
    private IOptimizer Optimizer => optimizer ?? throw new InvalidOperationException("The run has not started.");

    private List<TokenizedExample> Prepare(IReadOnlyList<TokenizedExample> data, string parameter)
    {
        var vocabulary = model.Config.VocabSize;
        var result = new List<TokenizedExample>(data.Count);
        for (var i = 0; i < data.Count; i++)
        {
            var example = data[i] ?? throw new ArgumentException($"Example {i + 1} is null.", parameter);
            var outside = example.InputIds.FirstOrDefault(id => id < 0 || id >= vocabulary, -1);
            if (outside != -1)
            {
                throw new ArgumentException($"Example {i + 1} has token id {outside}, outside the model's vocabulary of {vocabulary}; is the tokenizer the model's?", parameter);
            }

            example = example.Truncate(options.MaxSequenceLength);
            if (example.HasTargets(options.LossOnCompletionOnly))
            {
                result.Add(example);
            }
        }

        return result;
    }

    private void Start()
    {
        var parameters = strategy.TrainableParameters().Sum(p => p.Parameter.numel());
        if (options.ResumeFrom is { } from)
        {
            var checkpoint = TrainingCheckpoints.Resolve(from)
                ?? throw new InvalidOptionException($"{nameof(TrainingOptions)}.{nameof(TrainingOptions.ResumeFrom)}", $"'{from}' is neither a checkpoint nor a folder holding one.");
            var statePath = Path.Combine(checkpoint, TrainingCheckpoints.StateFileName);
            state = JsonSerializer.Deserialize(File.ReadAllText(statePath), TrainingJsonContext.Default.TrainerState)
                ?? throw new CheckpointFormatException("The trainer state is empty.", statePath);
            if (state.FormatVersion != 1)
            {
                throw new CheckpointFormatException($"Trainer state version {state.FormatVersion} is not supported (expected 1).", statePath);
            }

            if (state.Method != strategy.Method)
            {
                throw new InvalidOperationException($"Checkpoint '{checkpoint}' was written by the '{state.Method}' method, not '{strategy.Method}'.");
            }

            WarnIfDifferent(checkpoint, "data", state.DataFingerprint, fingerprint);
            WarnIfDifferent(checkpoint, "seed", state.Seed, options.Seed);
            WarnIfDifferent(checkpoint, "batch size", state.BatchSize, options.BatchSize);
            WarnIfDifferent(checkpoint, "gradient accumulation", state.GradientAccumulationSteps, options.GradientAccumulationSteps);
            WarnIfDifferent(checkpoint, "total step count", state.TotalSteps, totalSteps);
            // The strategy loads first: the optimizer takes the parameters (and master copies) as they are then.
            strategy.Load(checkpoint);
            optimizer = OptimizerFactory.Create(strategy.TrainableParameters(), options.Optimizer);
            optimizer.Load(Path.Combine(checkpoint, TrainingCheckpoints.OptimizerFileName));
            using (var rng = tensor(Convert.FromBase64String(state.RngState)))
            {
                set_rng_state(rng);
            }

            earlierSeconds = state.ElapsedSeconds;
            TrainerLog.Resume(logger, checkpoint, state.GlobalStep);
        }
        else
        {
            state = new TrainerState
            {
                Method = strategy.Method,
                Seed = options.Seed,
                BatchSize = options.BatchSize,
                GradientAccumulationSteps = options.GradientAccumulationSteps,
            };
            manual_seed(options.Seed);
            optimizer = OptimizerFactory.Create(strategy.TrainableParameters(), options.Optimizer);
        }

        state.TotalSteps = totalSteps;
        state.DataFingerprint = fingerprint;
        lastReportedStep = state.GlobalStep;
        TrainerLog.Start(logger, strategy.Method, rows.Count, exampleCount, skippedExamples, totalSteps, parameters);
    }

    private void WarnIfDifferent<T>(string checkpoint, string what, T saved, T current)
    {
        if (!EqualityComparer<T>.Default.Equals(saved, current))
        {
            TrainerLog.ResumeMismatch(logger, checkpoint, what);
        }
    }

    /// <summary>Runs one optimizer step; <c>false</c> when cancelled before it completed (its gradients are dropped).</summary>
    private bool TrainStep()
    {
        if (state.MicroBatchInEpoch >= microBatchesPerEpoch)
        {
            state.Epoch++;
            state.MicroBatchInEpoch = 0;
        }

        var epochOrder = OrderOf(state.Epoch);
        var count = Math.Min(options.GradientAccumulationSteps, microBatchesPerEpoch - state.MicroBatchInEpoch);
        var batches = Enumerable.Range(state.MicroBatchInEpoch, count)
            .Select(m => new ArraySegment<int>(epochOrder, m * options.BatchSize, Math.Min(options.BatchSize, rows.Count - (m * options.BatchSize))))
            .Select(indices => BatchCollator.Collate(indices.Select(i => rows[i]).ToList(), options.LossOnCompletionOnly))
            .ToList();

        // Token-weighted: every target token of the whole step counts the same, however micro-batches split them.
        double targets = batches.Sum(b => b.TargetCount);
        double loss = 0;
        foreach (var batch in batches)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                Optimizer.ZeroGrad();
                return false;
            }

            using var scope = NewDisposeScope();
            var sum = NextTokenLoss.Sum(model, batch);
            (sum / targets).backward();
            loss += sum.item<float>() / targets;
        }

        if (strategy is IRegularizedStrategy regularized)
        {
            using var scope = NewDisposeScope();
            regularized.RegularizationLoss()?.backward();
        }

        var learningRate = LearningRateSchedule.LearningRate(options.Optimizer.LearningRate, options.Schedule, state.GlobalStep, totalSteps);
        var gradNorm = Optimizer.Step(learningRate, options.MaxGradNorm);
        Optimizer.ZeroGrad();
        if (!double.IsFinite(gradNorm))
        {
            TrainerLog.SkippedStep(logger, state.GlobalStep + 1, gradNorm);
        }

        var tokens = batches.Sum(b => (long)b.TokenCount);
        state.GlobalStep++;
        state.MicroBatchInEpoch += count;
        state.LossHistory.Add(loss);
        state.GradNormHistory.Add(gradNorm);
        state.LearningRate = learningRate;
        state.TokensSeen += tokens;
        runTokens += tokens;
        runSteps++;
        return true;
    }

    /// <summary>The row order of an epoch: shuffled with a generator seeded from the seed and the epoch, so it can be recomputed on resume.</summary>
    private int[] OrderOf(int epoch)
    {
        if (epoch != orderEpoch)
        {
            order = Enumerable.Range(0, rows.Count).ToArray();
            if (options.Shuffle)
            {
                var random = new Random(EpochSeed(options.Seed, epoch));
                for (var i = order.Length - 1; i > 0; i--)
                {
                    var j = random.Next(i + 1);
                    (order[i], order[j]) = (order[j], order[i]);
                }
            }

            orderEpoch = epoch;
        }

        return order;
    }

    /// <summary>Evaluates and updates early stopping; <c>true</c> when patience ran out.</summary>
    private bool Evaluate()
    {
        var loss = LanguageModelEvaluator.Evaluate(model, evalExamples!, options.LossOnCompletionOnly, options.BatchSize, cancellationToken).Loss;
        state.EvalLosses.Add(new EvalLossPoint(state.GlobalStep, loss));
        var improved = state.BestEvalLoss is not { } best || loss < best - options.EarlyStoppingMinDelta;
        state.EvalsWithoutImprovement = improved ? 0 : state.EvalsWithoutImprovement + 1;
        state.BestEvalLoss = Math.Min(state.BestEvalLoss ?? double.PositiveInfinity, loss);
        TrainerLog.Evaluated(logger, state.GlobalStep, loss, state.BestEvalLoss.Value);
        if (options.EarlyStoppingPatience is { } patience && state.EvalsWithoutImprovement >= patience)
        {
            TrainerLog.EarlyStop(logger, state.GlobalStep, state.EvalsWithoutImprovement);
            return true;
        }

        return false;
    }

    private void Report()
    {
        var elapsed = clock.Elapsed;
        var window = Math.Max(1, state.GlobalStep - lastReportedStep);
        var report = new TrainingProgress
        {
            Step = state.GlobalStep,
            TotalSteps = totalSteps,
            Epoch = state.Epoch + ((double)state.MicroBatchInEpoch / microBatchesPerEpoch),
            Loss = RecentLoss(window),
            LearningRate = state.LearningRate,
            GradNorm = state.GradNormHistory.Count > 0 ? state.GradNormHistory[^1] : double.NaN,
            TokensPerSecond = TokensPerSecond(elapsed),
            Elapsed = elapsed,
            EstimatedRemaining = runSteps == 0 ? TimeSpan.Zero : elapsed / runSteps * Math.Max(0, totalSteps - state.GlobalStep),
            EvalLoss = state.EvalLosses.Count > 0 ? state.EvalLosses[^1].Loss : null,
        };
        lastReportedStep = state.GlobalStep;
        TrainerLog.Step(logger, report.Step, report.TotalSteps, report.Epoch, report.Loss, report.LearningRate, report.GradNorm, report.TokensPerSecond);
        progress?.Report(report);
    }

    private double RecentLoss(int window) =>
        state.LossHistory.Count == 0 ? double.NaN : state.LossHistory.TakeLast(window).Average();

    private double TokensPerSecond(TimeSpan elapsed) => elapsed > TimeSpan.Zero ? runTokens / elapsed.TotalSeconds : 0;

    private void SaveCheckpoint()
    {
        state.ElapsedSeconds = earlierSeconds + clock.Elapsed.TotalSeconds;
        using (var rng = get_rng_state())
        {
            state.RngState = Convert.ToBase64String(rng.data<byte>().ToArray());
        }

        var path = TrainingCheckpoints.Write(
            options.OutputDirectory!,
            state.GlobalStep,
            folder =>
            {
                strategy.Save(folder);
                Optimizer.Save(Path.Combine(folder, TrainingCheckpoints.OptimizerFileName));
                AtomicFile.WriteAllText(Path.Combine(folder, TrainingCheckpoints.StateFileName), JsonSerializer.Serialize(state, TrainingJsonContext.Default.TrainerState));
            },
            options.KeepCheckpoints);
        TrainerLog.Checkpoint(logger, path);
    }

    private TrainingResult Finish(bool cancelled, bool stoppedEarly)
    {
        var elapsed = clock.Elapsed;
        var result = new TrainingResult
        {
            Steps = state.GlobalStep,
            TotalSteps = totalSteps,
            TrainLoss = RecentLoss(options.LogEverySteps),
            LossHistory = state.LossHistory.ToList(),
            EvalLosses = state.EvalLosses.ToList(),
            BestEvalLoss = state.BestEvalLoss,
            StoppedEarly = stoppedEarly,
            Cancelled = cancelled,
            TokensSeen = state.TokensSeen,
            TokensPerSecond = TokensPerSecond(elapsed),
            Elapsed = elapsed,
            PeakMemoryBytes = ProcessMemory.PeakResidentBytes(),
        };

        if (cancelled)
        {
            TrainerLog.Cancelled(logger, state.GlobalStep);
        }
        else if (options.OutputDirectory is { } output)
        {
            strategy.Save(output);
            result = result with { OutputDirectory = Path.GetFullPath(output) };
        }

        if (options.OutputDirectory is { } folder)
        {
            result = result with { Checkpoints = TrainingCheckpoints.List(folder) };
            if (!cancelled)
            {
                AtomicFile.WriteAllText(Path.Combine(folder, TrainingCheckpoints.SummaryFileName), JsonSerializer.Serialize(result, TrainingJsonContext.Default.TrainingResult));
            }
        }

        TrainerLog.Done(logger, result.Steps, result.TrainLoss, elapsed, result.OutputDirectory ?? "(not saved)");
        return result;
    }

    private static int EpochSeed(long seed, int epoch)
    {
        // SplitMix64 of (seed, epoch): unrelated streams for neighbouring seeds and epochs.
        unchecked
        {
            var z = (ulong)seed + (0x9E3779B97F4A7C15UL * (ulong)(epoch + 1));
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return (int)((z ^ (z >> 31)) & 0x7FFFFFFF);
        }
    }

    private static string Fingerprint(IReadOnlyList<PackedRow> rows)
    {
        // FNV-1a over every row's examples: ids, trainable flags and boundaries.
        var hash = 14695981039346656037UL;
        void Add(long value)
        {
            unchecked
            {
                hash = (hash ^ (ulong)value) * 1099511628211UL;
            }
        }

        foreach (var row in rows)
        {
            foreach (var example in row.Examples)
            {
                for (var i = 0; i < example.Length; i++)
                {
                    Add(example.InputIds[i]);
                    Add(example.TrainableMask[i] ? 1 : 0);
                }

                Add(-1);
            }

            Add(-2);
        }

        return hash.ToString("x16", CultureInfo.InvariantCulture);
    }
}
