using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Training;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies;

/// <summary>Helpers shared by the prompt-tuning and prefix-tuning tests.</summary>
internal static class PromptLearningTestKit
{
    /// <summary>Two rows over the tiny vocabulary.</summary>
    public static readonly long[][] Rows = [[3, 14, 15, 92, 65, 35, 89, 79], [32, 38, 46, 26, 43, 38, 32, 79]];

    /// <summary>fp32 logits of <see cref="Rows"/> in one pass (optionally with a padding mask), detached.</summary>
    public static Tensor FullLogits(CausalLanguageModel model, Tensor? mask = null)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(Rows.SelectMany(r => r).ToArray(), [Rows.Length, Rows[0].Length], dtype: ScalarType.Int64);
        return model.call(ModelInput.FromIds(ids, mask)).Logits.detach().clone().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The same logits computed with a KV cache: the first <paramref name="promptLength"/> tokens in one pass, then one
    /// token per pass, joined along the sequence.
    /// </summary>
    public static Tensor CachedLogits(CausalLanguageModel model, int promptLength)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
        var ids = tensor(Rows.SelectMany(r => r).ToArray(), [Rows.Length, Rows[0].Length], dtype: ScalarType.Int64);
        var parts = new List<Tensor> { model.call(new ModelInput { InputIds = ids.narrow(1, 0, promptLength), Cache = cache }).Logits };
        for (var t = promptLength; t < Rows[0].Length; t++)
        {
            parts.Add(model.call(new ModelInput { InputIds = ids.narrow(1, t, 1), Cache = cache }).Logits);
        }

        return cat(parts, dim: 1).detach().clone().MoveToOuterDisposeScope();
    }

    /// <summary>Gradients of the next-token loss on a small batch (train mode), plain or with activation checkpointing.</summary>
    public static Dictionary<string, Tensor> Gradients(CausalLanguageModel model, bool checkpointed) =>
        ActivationCheckpointingTests.Gradients(model, BatchCollator.Collate(TrainingData.Examples(3, seed: 5).Select(PackedRow.Single).ToList(), lossOnCompletionOnly: true), checkpointed);

    /// <summary>Trains a few steps on random tiny examples with the trainer.</summary>
    public static TrainingResult TrainFewSteps(CausalLanguageModel model, IParameterStrategy strategy, int steps = 8, bool packing = false, double learningRate = 1e-2) =>
        TrainingData.Trainer(model, strategy, TrainingData.Fast with { MaxSteps = steps, Packing = packing, Optimizer = TrainingData.Fast.Optimizer with { LearningRate = learningRate } })
            .Train(TrainingData.Examples(8, seed: 3));

    /// <summary>The mean next-token loss of the examples <see cref="TrainFewSteps"/> trains on (one unpacked batch).</summary>
    public static double TrainingDataLoss(CausalLanguageModel model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var batch = BatchCollator.Collate(TrainingData.Examples(8, seed: 3).Select(PackedRow.Single).ToList(), lossOnCompletionOnly: true);
        return (Evaluation.NextTokenLoss.Sum(model, batch) / batch.TargetCount).item<float>();
    }

    /// <summary>A model of a published config on the meta device (no memory).</summary>
    public static CausalLanguageModel Meta(string json) => CausalLanguageModel.Create(ModelConfig.Parse(json), META);

    /// <summary>A Llama-architecture config with the given sizes (to express another family's dimensions).</summary>
    public static ModelConfig Shaped(int hidden, int layers, int heads, int kvHeads) => ModelConfig.Parse(PublishedConfigs.Llama2_7B) with
    {
        HiddenSize = hidden,
        NumHiddenLayers = layers,
        NumAttentionHeads = heads,
        NumKeyValueHeads = kvHeads,
        IntermediateSize = 4 * hidden,
    };

    /// <summary>Asserts the model's base parameters are frozen and bit-identical to a snapshot taken before.</summary>
    public static void AssertBaseUnchanged(Dictionary<string, Tensor> before, CausalLanguageModel model)
    {
        var now = model.named_parameters().Where(p => !p.name.StartsWith(PromptLearningStrategy.EncoderModuleName + ".", StringComparison.Ordinal)).ToList();
        Assert.Equal(before.Keys.Order(), now.Select(p => p.name).Order());
        foreach (var (name, p) in now)
        {
            Assert.False(p.requires_grad, name);
            Assert.True(before[name].eq(p).all().item<bool>(), name);
        }
    }
}
