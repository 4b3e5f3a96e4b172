using FineTuning.Core.Data;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Training;

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
}
