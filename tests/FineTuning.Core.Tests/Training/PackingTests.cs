using FineTuning.Core.Data;
using FineTuning.Core.Models;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class PackingTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_packed_row_gives_the_same_logits_as_its_examples_run_separately(bool slidingWindow)
    {
        using var model = TinyModels.Create(TinyModels.Config(slidingWindow: slidingWindow ? 3 : null));
        using var scope = NewDisposeScope();
        var examples = TrainingData.Examples(3, seed: 3, minLength: 4, maxLength: 7);
        var batch = BatchCollator.Collate([new PackedRow(examples)], lossOnCompletionOnly: true);
        var packed = model.call(batch.ToModelInput(CPU)).Logits[0];

        var offset = 0;
        foreach (var example in examples)
        {
            var ids = tensor(example.InputIds.Select(i => (long)i).ToArray(), [1, example.Length], dtype: ScalarType.Int64);
            var alone = model.call(ModelInput.FromIds(ids)).Logits[0];
            var part = packed.narrow(0, offset, example.Length);
            Assert.True(part.allclose(alone, rtol: 0, atol: 1e-5), $"max diff {(part - alone).abs().max().item<float>()}");
            offset += example.Length;
        }
    }

    [Fact]
    public void A_packed_batch_has_the_loss_and_gradients_of_the_unpacked_one()
    {
        var (model, _) = TrainingData.FullSft();
        using var _model = model;
        model.train();
        var examples = TrainingData.Examples(4, seed: 9, minLength: 3, maxLength: 8);
        var (plainLoss, plain) = TrainingData.Gradients(model, BatchCollator.Collate(examples.Select(PackedRow.Single).ToList(), true));
        var (packedLoss, packed) = TrainingData.Gradients(model, BatchCollator.Collate(SequencePacker.Pack(examples, 16), true));
        Assert.Equal(plainLoss, packedLoss, 1e-6);
        TrainingData.AssertClose(plain, packed, rtol: 1e-4, atol: 1e-7);
    }

    [Fact]
    public void Packed_padding_does_not_change_the_real_tokens()
    {
        using var model = TinyModels.Create();
        using var scope = NewDisposeScope();
        var examples = TrainingData.Examples(3, seed: 5, minLength: 3, maxLength: 5);
        var full = BatchCollator.Collate([new PackedRow(examples)], true);
        var shorter = BatchCollator.Collate([new PackedRow(examples), new PackedRow(examples.Take(1).ToList())], true);
        var a = model.call(full.ToModelInput(CPU)).Logits[0];
        var b = model.call(shorter.ToModelInput(CPU)).Logits;
        Assert.True(b[0].allclose(a, rtol: 0, atol: 1e-5));
        Assert.False(b.isnan().any().item<bool>());
    }

    [Fact]
    public void Sequence_ids_are_rejected_with_a_cache_or_a_wrong_shape()
    {
        using var model = TinyModels.Create();
        using var scope = NewDisposeScope();
        var ids = tensor(new long[] { 5, 6, 7, 8 }, [1, 4], dtype: ScalarType.Int64);
        var wrong = zeros(1, 3, dtype: ScalarType.Int64);
        Assert.Throws<ArgumentException>(() => model.call(new ModelInput { InputIds = ids, SequenceIds = wrong }));
        using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
        model.call(new ModelInput { InputIds = ids, Cache = cache });
        Assert.Throws<ArgumentException>(() => model.call(new ModelInput { InputIds = ids, Cache = cache, SequenceIds = zeros(1, 4, dtype: ScalarType.Int64) }));
    }
}
