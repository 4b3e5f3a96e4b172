using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Strategies.PromptTuning;
using FineTuning.Core.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Builder;

public sealed class PromptLearningBuilderTests
{
    [Fact]
    public void WithPromptTuning_text_init_uses_the_models_tokenizer_and_records_its_folder()
    {
        using var temp = new TempDirectory();
        var folder = TinyModels.WritePreset(temp.File("base"));
        using var tuner = FineTuner.Create().WithModel(folder).WithPromptTuning(virtualTokens: 5, initText: "map red").Build();
        var strategy = Assert.IsType<PromptTuningStrategy>(tuner.Strategy);
        Assert.Equal(PromptTuningInit.Text, strategy.Options.Init);
        Assert.Equal(folder, strategy.Options.TokenizerNameOrPath);

        // "map red" is two GPT-2 tokens, repeated to five: ids a, b, a, b, a.
        var ids = TokenizerLoader.Load(folder).Encode("map red");
        Assert.Equal(2, ids.Count);
        var table = tuner.Model.Body.EmbedTokens.weight!;
        var weight = strategy.Embedding!.Weight;
        for (var t = 0; t < 5; t++)
        {
            Assert.True(weight[t].eq(table[ids[t % 2]]).all().item<bool>(), $"virtual token {t}");
        }

        Assert.Equal(5L * 64, tuner.Parameters.Trainable);
    }

    [Fact]
    public void WithPrefixTuning_applies_the_options_and_one_method_per_tuner_is_enforced()
    {
        using var temp = new TempDirectory();
        var folder = TinyModels.WritePreset(temp.File("base"));
        using (var tuner = FineTuner.Create().WithModel(folder).WithPrefixTuning(virtualTokens: 3, prefixProjection: true, encoderHiddenSize: 8).Build())
        {
            var strategy = Assert.IsType<PrefixTuningStrategy>(tuner.Strategy);
            Assert.NotNull(strategy.Encoder!.Projection);

            // kv_dim 32 (2 heads of 16), 2 layers: 3·32 + (32·8 + 8) + (8·128 + 128).
            Assert.Equal((3L * 32) + (32 * 8) + 8 + (8 * 128) + 128, tuner.Parameters.Trainable);
        }

        var error = Assert.Throws<InvalidOptionException>(() => FineTuner.Create().WithModel(folder).WithPrefixTuning().WithPromptTuning().Build());
        Assert.Equal("WithPromptTuning", error.Option);
    }
}
