using FineTuning.Core.Optimizers;
using FineTuning.Core.Training;

namespace FineTuning.Core.Strategies.QLora;

/// <summary>
/// The QLoRA paper's training hyperparameters (Dettmers et al., 2023, Appendix B.2, and the repository's
/// <c>qlora.py</c> defaults and <c>scripts/finetune_guanaco_7b.sh</c>); the adapter settings are
/// <see cref="QLoraOptions.PaperPreset"/>.
/// </summary>
public static class QLoraPreset
{
    /// <summary>Learning rate 2e-4: the paper's and the 7B/13B scripts' value (33B and 65B use 1e-4 with twice the batch).</summary>
    public const double PaperLearningRate = 2e-4;

    /// <summary>Warmup ratio 0.03: <c>--warmup_ratio 0.03</c> in every Guanaco script and <c>qlora.py</c>'s default.</summary>
    public const double PaperWarmupRatio = 0.03;

    /// <summary>Gradient-norm clipping at 0.3: <c>--max_grad_norm 0.3</c> (Appendix B.2, scripts, <c>qlora.py</c> default).</summary>
    public const double PaperMaxGradNorm = 0.3;

    /// <summary>
    /// The paper's optimizer and schedule applied to <paramref name="training"/>: paged AdamW with fp32 states
    /// (<c>--optim paged_adamw_32bit</c>, β2 0.999, no weight decay), learning rate 2e-4, a constant schedule after a
    /// warmup of 3 % of the steps, gradients clipped to norm 0.3. Batch size, steps and sequence length are left as they
    /// are (the paper used an effective batch of 16 for 7B/13B: 1 × 16 accumulation steps, 1875 steps).
    /// </summary>
    /// <remarks>
    /// In Transformers, <c>lr_scheduler_type="constant"</c> ignores the warmup (<c>get_scheduler</c> returns the
    /// constant schedule before reading <c>num_warmup_steps</c>), so the paper's runs most likely had none although
    /// the scripts pass <c>--warmup_ratio 0.03</c>. This preset keeps the documented 0.03; set
    /// <see cref="ScheduleOptions.WarmupRatio"/> to 0 to reproduce that behaviour.
    /// </remarks>
    /// <param name="training">The loop settings to start from.</param>
    /// <returns>The settings with the paper's optimizer, schedule and clipping.</returns>
    public static TrainingOptions PaperTraining(TrainingOptions training)
    {
        ArgumentNullException.ThrowIfNull(training);
        return training with
        {
            MaxGradNorm = PaperMaxGradNorm,
            Optimizer = training.Optimizer with
            {
                Kind = OptimizerKind.PagedAdamW,
                LearningRate = PaperLearningRate,
                Beta2 = 0.999,
                WeightDecay = 0,
            },
            Schedule = training.Schedule with
            {
                Kind = ScheduleKind.Constant,
                WarmupSteps = null,
                WarmupRatio = PaperWarmupRatio,
            },
        };
    }
}
