using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Strategies.PromptTuning;
using Xunit;

namespace FineTuning.Core.Tests.Strategies;

/// <summary>
/// The saved files are byte for byte as large as PEFT's MetaMathQA adapters for meta-llama/Llama-3.2-3B (PEFT's
/// results files: prompt tuning 200 tokens 2,457,728 bytes, prefix tuning 200 tokens 45,875,328 bytes): one fp32 tensor
/// <c>prompt_embeddings</c>, a header padded to 8 bytes. Small models with the same token_dim (3072 for prompt tuning;
/// 28 layers of 8 key/value heads of 128 for prefix tuning) give the same tensor shapes.
/// </summary>
public sealed class PromptLearningFileSizeTests
{
    private static long SavedBytes(IParameterStrategy strategy, ModelConfig config)
    {
        using var temp = new TempDirectory();
        using var model = CausalLanguageModel.Create(config);
        strategy.Apply(model, StrategyContext.Empty);
        strategy.Save(temp.Path);
        return new FileInfo(temp.File(PeftAdapterFiles.WeightsFileName)).Length;
    }

    [Fact]
    public void Prompt_tuning_200_tokens_of_3072()
    {
        var config = TinyModels.Config() with { HiddenSize = 3072, NumAttentionHeads = 2, NumKeyValueHeads = 1, ExplicitHeadDim = 8, IntermediateSize = 8, NumHiddenLayers = 1 };
        Assert.Equal(2_457_728, SavedBytes(new PromptTuningStrategy(new PromptTuningOptions { NumVirtualTokens = 200 }), config));
    }

    [Fact]
    public void Prefix_tuning_200_tokens_on_28_layers_of_8_key_value_heads_of_128()
    {
        var config = TinyModels.Config() with { HiddenSize = 16, NumAttentionHeads = 8, NumKeyValueHeads = 8, ExplicitHeadDim = 128, IntermediateSize = 8, NumHiddenLayers = 28 };
        Assert.Equal(45_875_328, SavedBytes(new PrefixTuningStrategy(new PrefixTuningOptions { NumVirtualTokens = 200 }), config));
    }
}
