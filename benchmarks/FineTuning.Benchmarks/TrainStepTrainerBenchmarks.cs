using BenchmarkDotNet.Attributes;
using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Training;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// The library's own optimizer step, through the public <see cref="Trainer"/>: each operation is one
/// <see cref="Trainer.Train(IReadOnlyList{TokenizedExample}, IReadOnlyList{TokenizedExample}?, IProgress{TrainingProgress}?, CancellationToken)"/>
/// call of <see cref="StepsPerCall"/> steps on pre-tokenised rows of <see cref="BenchmarkModel.LayerHeavy"/>, and the
/// reported time is per step. Full SFT is the baseline.
/// </summary>
/// <remarks>
/// Unlike <see cref="TrainStepBenchmarks"/> this runs exactly what training runs, including the internal AdamW with
/// fp32 master copies and fp32 moments for bf16 weights, collation and the token-weighted loss. The price: every
/// <c>Train</c> call creates (and frees) the optimizer state, which a long run does once, so that cost is spread over
/// <see cref="StepsPerCall"/> steps rather than left out. It is larger for full SFT than for LoRA, so these ratios lean
/// slightly towards LoRA. No tokenizer work is timed: the rows are token ids already.
/// </remarks>
[WarmupCount(2)]
[IterationCount(6)]
public class TrainStepTrainerBenchmarks
{
    /// <summary>Optimizer steps per <c>Train</c> call (and per measured operation).</summary>
    public const int StepsPerCall = 8;

    private CausalLanguageModel model = null!;
    private Trainer trainer = null!;
    private TokenizedExample[] rows = [];

    /// <summary>The base weights' dtype. LoRA adapters, logits and the loss are fp32 either way.</summary>
    [Params(ScalarType.BFloat16, ScalarType.Float32)]
    public ScalarType DType { get; set; }

    /// <summary>Full SFT: every parameter trains.</summary>
    [GlobalSetup(Target = nameof(FullSft))]
    public void SetupFullSft() => Setup(TrainingMethods.FullSft());

    /// <summary>LoRA r 16, alpha 32 on every Linear of the decoder layers.</summary>
    [GlobalSetup(Target = nameof(LoraAllLinear))]
    public void SetupLoraAllLinear() => Setup(TrainingMethods.LoraAllLinear());

    /// <summary>LoRA r 16, alpha 32 on q_proj and v_proj.</summary>
    [GlobalSetup(Target = nameof(LoraQv))]
    public void SetupLoraQv() => Setup(TrainingMethods.LoraQv());

    private void Setup(IParameterStrategy strategy)
    {
        (model, trainer, rows) = TrainingMethods.TrainerRun(BenchmarkModel.LayerHeavy, DType, strategy, StepsPerCall);
    }

    /// <summary>Frees the model.</summary>
    [GlobalCleanup]
    public void Cleanup() => model.Dispose();

    /// <summary>Full SFT through the trainer (the baseline).</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(Baseline = true, OperationsPerInvoke = StepsPerCall)]
    public int FullSft() => trainer.Train(rows).Steps;

    /// <summary>LoRA (all linear layers) through the trainer.</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(OperationsPerInvoke = StepsPerCall)]
    public int LoraAllLinear() => trainer.Train(rows).Steps;

    /// <summary>LoRA (q_proj and v_proj) through the trainer.</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(OperationsPerInvoke = StepsPerCall)]
    public int LoraQv() => trainer.Train(rows).Steps;
}
