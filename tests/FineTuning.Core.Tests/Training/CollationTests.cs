using FineTuning.Core.Data;
using Xunit;

namespace FineTuning.Core.Tests.Training;

public class CollationTests
{
    private static TokenizedExample Example(int[] ids, int prompt) => new(ids, ids.Select((_, i) => i >= prompt).ToList());

    [Fact]
    public void Right_padding_masks_padding_and_prompt_tokens()
    {
        var a = Example([10, 11, 12, 13, 14], prompt: 2);
        var b = Example([20, 21, 22], prompt: 1);
        var batch = BatchCollator.Collate([PackedRow.Single(a), PackedRow.Single(b)], lossOnCompletionOnly: true);

        Assert.Equal((2, 5), (batch.Rows, batch.Length));
        Assert.Equal(new long[] { 10, 11, 12, 13, 14, 20, 21, 22, 0, 0 }, batch.InputIds);
        Assert.Equal(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, batch.AttentionMask);
        Assert.Equal(new long[] { -100, -100, 12, 13, 14, -100, 21, 22, -100, -100 }, batch.Labels);
        Assert.Equal(new long[] { 0, 1, 2, 3, 4, 0, 1, 2, 0, 0 }, batch.PositionIds);
        Assert.Null(batch.SequenceIds);
        Assert.Equal((8, 5), (batch.TokenCount, batch.TargetCount));
        Assert.True(batch.HasPadding);
    }

    [Fact]
    public void Without_completion_only_every_token_but_the_first_is_a_target()
    {
        var a = Example([10, 11, 12], prompt: 3);
        var batch = BatchCollator.Collate([PackedRow.Single(a)], lossOnCompletionOnly: false);
        Assert.Equal(new long[] { -100, 11, 12 }, batch.Labels);
        Assert.False(batch.HasPadding);
        using var scope = TorchSharp.torch.NewDisposeScope();
        Assert.Null(batch.ToModelInput(TorchSharp.torch.CPU).AttentionMask);
    }

    [Fact]
    public void Packed_rows_restart_positions_and_never_predict_across_examples()
    {
        var a = Example([10, 11, 12], prompt: 0);
        var b = Example([20, 21], prompt: 0);
        var c = Example([30, 31, 32, 33], prompt: 0);
        var batch = BatchCollator.Collate([new PackedRow([a, b]), PackedRow.Single(c)], lossOnCompletionOnly: true);

        Assert.Equal(new long[] { 10, 11, 12, 20, 21, 30, 31, 32, 33, 0 }.Take(10), batch.InputIds.Take(10));
        Assert.Equal(new long[] { 0, 1, 2, 0, 1, 0, 1, 2, 3, 0 }, batch.PositionIds);
        Assert.Equal(new long[] { -100, 11, 12, -100, 21, -100, 31, 32, 33, -100 }, batch.Labels);
        Assert.Equal(new long[] { 0, 0, 0, 1, 1, 0, 0, 0, 0, 1 }, batch.SequenceIds);
    }

    [Fact]
    public void Packer_fills_rows_in_order_without_splitting_examples()
    {
        var lengths = new[] { 5, 3, 4, 8, 1, 2 };
        var examples = lengths.Select(n => Example(Enumerable.Range(1, n).ToArray(), 0)).ToList();
        var rows = SequencePacker.Pack(examples, rowLength: 8);
        Assert.Equal(new[] { new[] { 5, 3 }, new[] { 4 }, new[] { 8 }, new[] { 1, 2 } }, rows.Select(r => r.Examples.Select(e => e.Length).ToArray()));
        Assert.Throws<ArgumentException>(() => SequencePacker.Pack(examples, rowLength: 7));
    }
}
