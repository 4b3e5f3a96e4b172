using BenchmarkDotNet.Attributes;
using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Training;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>A fine-tuning method in <see cref="MethodsAndOptimizersBenchmarks"/>.</summary>
public enum TrainingMethod
{
    /// <summary>Every parameter trains.</summary>
    FullSft,

    /// <summary>LoRA r 16, alpha 32 on every decoder Linear; bf16 base.</summary>
    Lora,

    /// <summary>QLoRA defaults: NF4 base (blocksize 64, double quantization), LoRA r 16, alpha 32 on every decoder Linear.</summary>
    QLora,
}

/// <summary>One method × optimizer combination (full SFT is left out with the paged optimizer to keep the run short).</summary>
/// <param name="Method">The method.</param>
/// <param name="Optimizer">The optimizer.</param>
public readonly record struct MethodAndOptimizer(TrainingMethod Method, OptimizerKind Optimizer)
{
    /// <inheritdoc />
    public override string ToString() => $"{Method}/{Optimizer}";
}

/// <summary>
/// One optimizer step of full SFT, LoRA and QLoRA with the plain, paged and 8-bit AdamW, through the public
/// <see cref="Trainer"/> on the same bf16 <see cref="BenchmarkModel.LayerHeavy"/> model and pre-tokenised rows. Each
/// operation is a <c>Train</c> call of <see cref="StepsPerCall"/> steps; the time is per step. Each case runs in its own
/// process, so the Peak RSS column compares the methods' memory directly.
/// </summary>
[WarmupCount(1)]
[IterationCount(3)]
public class MethodsAndOptimizersBenchmarks
{
    /// <summary>Optimizer steps per <c>Train</c> call (and per measured operation).</summary>
    public const int StepsPerCall = 2;

    private CausalLanguageModel model = null!;
    private Trainer trainer = null!;
    private TokenizedExample[] rows = [];

    /// <summary>The combinations measured.</summary>
    public static IEnumerable<MethodAndOptimizer> Cases { get; } =
    [
        new(TrainingMethod.FullSft, OptimizerKind.AdamW),
        new(TrainingMethod.FullSft, OptimizerKind.AdamW8bit),
        new(TrainingMethod.Lora, OptimizerKind.AdamW),
        new(TrainingMethod.Lora, OptimizerKind.PagedAdamW),
        new(TrainingMethod.Lora, OptimizerKind.AdamW8bit),
        new(TrainingMethod.QLora, OptimizerKind.AdamW),
        new(TrainingMethod.QLora, OptimizerKind.PagedAdamW),
        new(TrainingMethod.QLora, OptimizerKind.AdamW8bit),
    ];

    /// <summary>The method and optimizer of this case.</summary>
    [ParamsSource(nameof(Cases))]
    public MethodAndOptimizer Case { get; set; }

    /// <summary>Builds the bf16 model, applies the method and creates the trainer.</summary>
    [GlobalSetup]
    public void Setup()
    {
        IParameterStrategy strategy = Case.Method switch
        {
            TrainingMethod.FullSft => TrainingMethods.FullSft(),
            TrainingMethod.Lora => TrainingMethods.LoraAllLinear(),
            TrainingMethod.QLora => new QLoraStrategy(QLoraOptions.Default),
            _ => throw new InvalidOperationException(Case.ToString()),
        };
        (model, trainer, rows) = TrainingMethods.TrainerRun(BenchmarkModel.LayerHeavy, ScalarType.BFloat16, strategy, StepsPerCall, o => o with { Optimizer = new OptimizerOptions { Kind = Case.Optimizer } });
    }

    /// <summary>Frees the model.</summary>
    [GlobalCleanup]
    public void Cleanup() => model.Dispose();

    /// <summary>Optimizer steps through the trainer.</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(OperationsPerInvoke = StepsPerCall)]
    public int Step() => trainer.Train(rows).Steps;
}
