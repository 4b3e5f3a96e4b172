using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;

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
}
