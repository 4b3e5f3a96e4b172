using BenchmarkDotNet.Attributes;
using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// LoRA against QLoRA where the weights dominate memory: optimizer steps through the public <see cref="Trainer"/> on
/// the 1.98 B-parameter <see cref="BenchmarkModel.WeightHeavy"/> model, bf16 base for LoRA and NF4 + double
/// quantization for QLoRA, the same LoRA (r 16, alpha 32, every decoder Linear), AdamW, activation checkpointing for
/// both (as in torchtune's QLoRA recipes). <see cref="Runtime"/> measures the process without a model (.NET, libtorch,
/// the tokenizer), so the memory each method adds on top of the runtime can be compared too. One process per case;
/// each first fixes glibc's mmap threshold (<see cref="MallocSettings"/>) so peak RSS follows live memory.
/// </summary>
[WarmupCount(1)]
[IterationCount(3)]
public class QLoraMemoryBenchmarks
{
    /// <summary>Optimizer steps per <c>Train</c> call (and per measured operation).</summary>
    public const int StepsPerCall = 1;

    private CausalLanguageModel? model;
    private Trainer? trainer;
    private TokenizedExample[] rows = [];
    private Tensor? probe;

    /// <summary>LoRA on the bf16 base.</summary>
    [GlobalSetup(Target = nameof(Lora))]
    public void SetupLora() => Setup(TrainingMethods.LoraAllLinear());

    /// <summary>QLoRA's defaults (NF4, blocksize 64, double quantization, bf16 compute, the same LoRA).</summary>
    [GlobalSetup(Target = nameof(QLora))]
    public void SetupQLora() => Setup(new QLoraStrategy(QLoraOptions.Default));

    /// <summary>Loads libtorch and the tokenizer, as the other cases do, but builds no model.</summary>
    [GlobalSetup(Target = nameof(Runtime))]
    public void SetupRuntime()
    {
        MallocSettings.MapLargeBlocks();
        _ = TokenizerLoader.Gpt2();
        probe = ones(16, 16);
    }

    private void Setup(IParameterStrategy strategy)
    {
        MallocSettings.MapLargeBlocks();
        (model, trainer, rows) = TrainingMethods.TrainerRun(BenchmarkModel.WeightHeavy, ScalarType.BFloat16, strategy, StepsPerCall, o => o with { ActivationCheckpointing = true });
    }

    /// <summary>Frees the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        model?.Dispose();
        probe?.Dispose();
    }

    /// <summary>LoRA optimizer steps.</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(Baseline = true, OperationsPerInvoke = StepsPerCall)]
    public int Lora() => trainer!.Train(rows).Steps;

    /// <summary>QLoRA optimizer steps.</summary>
    /// <returns>The steps done.</returns>
    [Benchmark(OperationsPerInvoke = StepsPerCall)]
    public int QLora() => trainer!.Train(rows).Steps;

    /// <summary>A trivial tensor op: the runtime's own footprint.</summary>
    /// <returns>The sum.</returns>
    [Benchmark]
    public float Runtime()
    {
        using var sum = probe!.sum();
        return sum.item<float>();
    }
}
