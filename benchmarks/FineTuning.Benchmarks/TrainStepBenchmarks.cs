using BenchmarkDotNet.Attributes;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// One complete optimizer step of full SFT and of LoRA on the same model: forward, fp32 next-token cross-entropy,
/// backward, global gradient-norm clipping to 1.0, an AdamW update and dropping the gradients. Full SFT is the
/// baseline, so BenchmarkDotNet's Ratio column is LoRA time / SFT time for each model and dtype.
/// </summary>
/// <remarks>
/// <para>
/// The strategies are the library's (<see cref="FullSftStrategy"/>, <see cref="LoraStrategy"/>); the optimizer is
/// TorchSharp's <c>torch.optim.AdamW</c> over the strategy's <see cref="IParameterStrategy.TrainableParameters"/>
/// with the library's defaults (lr 2e-4, betas 0.9/0.999, eps 1e-8, no weight decay) and the clipping is
/// <c>nn.utils.clip_grad_norm_</c>, because the library's own AdamW is internal. Same update rule, different cost:
/// TorchSharp's AdamW makes more passes over every parameter than the library's (a weight-decay multiply even at 0,
/// <c>mul_</c> + <c>add_</c> where the library uses one <c>lerp_</c>) and the clipping always rescales the gradients.
/// For bf16 weights TorchSharp keeps the moments in bf16, while the trainer keeps an fp32 master copy and fp32
/// moments. Both differences only matter for full SFT (LoRA trains few parameters, and its adapters are fp32 by
/// default). <see cref="TrainStepTrainerBenchmarks"/> times the library's own step.
/// </para>
/// <para>The weights change every step; the cost of a step does not depend on their values.</para>
/// </remarks>
public class TrainStepBenchmarks
{
    private CausalLanguageModel model = null!;
    private IParameterStrategy strategy = null!;
    private Parameter[] parameters = [];
    private optim.Optimizer optimizer = null!;
    private Tensor inputIds = null!;
    private Tensor targets = null!;

    /// <summary>Which model: the 7.1 M-parameter one the other benchmarks use, or one whose layers dominate.</summary>
    [Params(BenchmarkModel.Small, BenchmarkModel.LayerHeavy)]
    public BenchmarkModel Model { get; set; }

    /// <summary>The base weights' dtype. LoRA adapters, logits and the loss are fp32 either way.</summary>
    [Params(ScalarType.BFloat16, ScalarType.Float32)]
    public ScalarType DType { get; set; }

    /// <summary>Full SFT: every parameter trains.</summary>
    [GlobalSetup(Target = nameof(FullSft))]
    public void SetupFullSft() => Setup(TrainingMethods.FullSft());

    /// <summary>LoRA r 16, alpha 32 on every Linear of the decoder layers (q, k, v, o, gate, up, down).</summary>
    [GlobalSetup(Target = nameof(LoraAllLinear))]
    public void SetupLoraAllLinear() => Setup(TrainingMethods.LoraAllLinear());

    /// <summary>LoRA r 16, alpha 32 on PEFT's default Llama targets, q_proj and v_proj.</summary>
    [GlobalSetup(Target = nameof(LoraQv))]
    public void SetupLoraQv() => Setup(TrainingMethods.LoraQv());

    private void Setup(IParameterStrategy method)
    {
        model = BenchmarkModels.Create(Model, DType);
        strategy = method;
        strategy.Apply(model, StrategyContext.Empty);
        model.train();
        parameters = strategy.TrainableParameters().Select(p => p.Parameter).ToArray();
        optimizer = optim.AdamW(parameters, lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0);

        var (batch, length) = BenchmarkModels.TrainingBatchOf(Model);
        (inputIds, targets) = BenchmarkModels.NextTokenBatch(batch, length, seed: 42);
    }

    /// <summary>Frees the optimizer state, the batch and the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        optimizer.Dispose();
        inputIds.Dispose();
        targets.Dispose();
        model.Dispose();
    }

    /// <summary>One full-SFT step (the baseline).</summary>
    /// <returns>The loss before the update.</returns>
    [Benchmark(Baseline = true)]
    public float FullSft() => Step();

    /// <summary>One LoRA step, all linear layers wrapped.</summary>
    /// <returns>The loss before the update.</returns>
    [Benchmark]
    public float LoraAllLinear() => Step();

    /// <summary>One LoRA step, q_proj and v_proj wrapped.</summary>
    /// <returns>The loss before the update.</returns>
    [Benchmark]
    public float LoraQv() => Step();

    private float Step()
    {
        using var scope = NewDisposeScope(); // logits, loss, gradients' temporaries and the optimizer's all die here
        var logits = model.call(ModelInput.FromIds(inputIds)).Logits;
        var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));
        loss.backward();
        nn.utils.clip_grad_norm_(parameters, max_norm: 1.0);
        optimizer.step();
        model.zero_grad(); // set_to_none, as the trainer does: gradients are freed until the next backward
        return loss.item<float>();
    }
}
