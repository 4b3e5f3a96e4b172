using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>The fine-tuning methods the training-step benchmarks compare, configured once for every class.</summary>
internal static class TrainingMethods
{
    /// <summary>Full SFT: every parameter trains.</summary>
    public static FullSftStrategy FullSft() => new();

    /// <summary>LoRA r 16, alpha 32 on every Linear of the decoder layers (q, k, v, o, gate, up, down; not lm_head).</summary>
    public static LoraStrategy LoraAllLinear() => new(new LoraOptions { R = 16, Alpha = 32, TargetModules = LoraTargetModules.AllLinear });

    /// <summary>LoRA r 16, alpha 32 on PEFT's default Llama targets, q_proj and v_proj.</summary>
    public static LoraStrategy LoraQv() => new(new LoraOptions { R = 16, Alpha = 32 });

    /// <summary>
    /// Pre-tokenised rows of a model's training batch (every token a target) and trainer options that run
    /// <paramref name="steps"/> steps over them in order, one batch per step.
    /// </summary>
    public static (TokenizedExample[] Rows, TrainingOptions Options) TrainerInputs(BenchmarkModel model, int steps)
    {
        var (batch, length) = BenchmarkModels.TrainingBatchOf(model);
        var rowLength = (int)length + 1;
        using var ids = BenchmarkModels.RandomIds(batch, rowLength, seed: 42);
        var values = ids.data<long>().Select(id => (int)id).ToArray();
        var rows = Enumerable.Range(0, (int)batch)
            .Select(row => new TokenizedExample(values[(row * rowLength)..((row + 1) * rowLength)], Enumerable.Repeat(true, rowLength).ToArray()))
            .ToArray();
        var options = new TrainingOptions
        {
            MaxSteps = steps,
            BatchSize = (int)batch,
            MaxSequenceLength = rowLength,
            Shuffle = false,
            LogEverySteps = 1000,
        };
        return (rows, options);
    }

    /// <summary>
    /// Builds a benchmark model, applies a method to it and creates the public <see cref="Trainer"/> over the
    /// pre-tokenised rows of <see cref="TrainerInputs"/> (the GPT-2 tokenizer is only needed for text data).
    /// </summary>
    /// <param name="model">Which model.</param>
    /// <param name="dtype">The base weights' dtype.</param>
    /// <param name="strategy">The method.</param>
    /// <param name="steps">Optimizer steps per <c>Train</c> call.</param>
    /// <param name="configure">Changes to the training options, e.g. the optimizer.</param>
    /// <returns>The model (the caller disposes it), the trainer and the rows.</returns>
    public static (CausalLanguageModel Model, Trainer Trainer, TokenizedExample[] Rows) TrainerRun(BenchmarkModel model, ScalarType dtype, IParameterStrategy strategy, int steps, Func<TrainingOptions, TrainingOptions>? configure = null)
    {
        var built = BenchmarkModels.Create(model, dtype);
        strategy.Apply(built, StrategyContext.Empty);
        var (rows, options) = TrainerInputs(model, steps);
        return (built, new Trainer(built, strategy, TokenizerLoader.Gpt2(), configure?.Invoke(options) ?? options), rows);
    }
}
