using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Training;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class ActivationCheckpointingTests
{
    internal static Dictionary<string, Tensor> Gradients(CausalLanguageModel model, CollatedBatch batch, bool checkpointed)
    {
        model.train();
        model.LayerRunner = checkpointed ? ActivationCheckpointing.Runner : null;
        try
        {
            return TrainingData.Gradients(model, batch).Gradients;
        }
        finally
        {
            model.LayerRunner = null;
            model.eval();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Checkpointed_gradients_equal_the_plain_ones(bool packed)
    {
        var (model, _) = TrainingData.FullSft();
        using var _model = model;
        var examples = TrainingData.Examples(4, seed: 11);
        var rows = packed ? SequencePacker.Pack(examples, 24) : examples.Select(PackedRow.Single).ToList();
        var batch = BatchCollator.Collate(rows, lossOnCompletionOnly: true);
        var plain = Gradients(model, batch, checkpointed: false);
        var checkpointed = Gradients(model, batch, checkpointed: true);
        Assert.Equal(model.named_parameters().Count(), plain.Count);
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void Checkpointed_qlora_gradients_equal_the_plain_ones()
    {
        // The re-run keeps each 4-bit layer's dequantized weight for its backward instead of dequantizing it again.
        using var model = TinyModels.Create();
        var options = QLoraOptions.Default with { Quantization = QLoraOptions.Default.Quantization with { ComputeDType = ScalarType.Float32 } };
        new QLoraStrategy(options).Apply(model, StrategyContext.Empty);
        foreach (var (name, parameter) in model.named_parameters().Where(p => p.name.Contains("lora_B")))
        {
            using var _ = no_grad();
            parameter.normal_(0, 0.05); // B starts at zero: make the adapters' input gradients non-trivial
        }

        var batch = BatchCollator.Collate(TrainingData.Examples(3, seed: 5).Select(PackedRow.Single).ToList(), true);
        var plain = Gradients(model, batch, checkpointed: false);
        var checkpointed = Gradients(model, batch, checkpointed: true);
        Assert.Equal(2 * 7 * model.Config.NumHiddenLayers, plain.Count);
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void Layers_get_gradients_when_the_embeddings_are_frozen()
    {
        using var model = TinyModels.Create();
        var strategy = SubsetStrategy.NormsOnly();
        strategy.Apply(model, StrategyContext.Empty);
        var batch = BatchCollator.Collate(TrainingData.Examples(2).Select(PackedRow.Single).ToList(), true);
        var plain = Gradients(model, batch, checkpointed: false);
        var checkpointed = Gradients(model, batch, checkpointed: true);
        Assert.Equal(2 * model.Config.NumHiddenLayers + 1, plain.Count);
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void Dropout_draws_the_same_mask_in_the_recomputation()
    {
        // An MLP-output adapter with dropout: without replaying the generator, recomputation would draw a new mask.
        var config = TinyModels.Config();
        var plainModel = TinyModels.Create(config);
        var checkpointedModel = TinyModels.Create(config);
        using var a = plainModel;
        using var b = checkpointedModel;
        foreach (var m in new[] { plainModel, checkpointedModel })
        {
            foreach (var layer in m.Body.Layers)
            {
                layer.MlpOutputAdapter = TorchSharp.torch.nn.Dropout(0.3);
            }
        }

        var batch = BatchCollator.Collate(TrainingData.Examples(2).Select(PackedRow.Single).ToList(), true);
        manual_seed(5);
        var plain = Gradients(plainModel, batch, checkpointed: false);
        var afterPlain = get_rng_state();
        manual_seed(5);
        var checkpointed = Gradients(checkpointedModel, batch, checkpointed: true);
        Assert.True(get_rng_state().eq(afterPlain).all().item<bool>());
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }
}
