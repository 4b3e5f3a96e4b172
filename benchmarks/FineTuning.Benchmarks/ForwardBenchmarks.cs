using BenchmarkDotNet.Attributes;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// One training step (forward, next-token cross-entropy, backward, zero grads) and one inference forward of
/// <see cref="BenchmarkModels.Config"/> on a batch of 4 × 128 tokens, in fp32 and bf16 weights.
/// </summary>
public class ForwardBenchmarks
{
    private const long Batch = 4;
    private const long SequenceLength = 128;

    private CausalLanguageModel model = null!;
    private Tensor inputIds = null!;
    private Tensor targets = null!;

    /// <summary>Weight (and activation) dtype. Logits and the loss are fp32 either way.</summary>
    [Params(ScalarType.Float32, ScalarType.BFloat16)]
    public ScalarType DType { get; set; }

    [GlobalSetup(Target = nameof(TrainStep))]
    public void SetupTraining() => Setup(training: true);

    [GlobalSetup(Target = nameof(Forward))]
    public void SetupInference() => Setup(training: false);

    private void Setup(bool training)
    {
        model = BenchmarkModels.Create(DType);
        model.train(training);
        (inputIds, targets) = BenchmarkModels.NextTokenBatch(Batch, SequenceLength, seed: 42);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        inputIds.Dispose();
        targets.Dispose();
        model.Dispose();
    }

    /// <summary>Forward, cross-entropy against the next tokens, backward, then drop the gradients.</summary>
    /// <returns>The loss, so the work is observable.</returns>
    [Benchmark]
    public float TrainStep()
    {
        using var scope = NewDisposeScope(); // logits, loss and every temporary die here
        var logits = model.call(ModelInput.FromIds(inputIds)).Logits;
        var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1));
        loss.backward();
        var value = loss.item<float>();
        model.zero_grad(); // set_to_none: the gradients are freed, as an optimizer step would leave them
        return value;
    }

    /// <summary>Inference forward over the whole batch, all positions' logits (fp32).</summary>
    /// <returns>One logit, so the work is observable.</returns>
    [Benchmark]
    public float Forward()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var logits = model.call(ModelInput.FromIds(inputIds)).Logits;
        return logits[0, -1, 0].item<float>();
    }
}
