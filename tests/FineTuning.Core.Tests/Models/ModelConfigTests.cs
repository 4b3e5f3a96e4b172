using FineTuning.Core.Models;
using TorchSharp;
using Xunit;

namespace FineTuning.Core.Tests.Models;

public class ModelConfigTests
{
    [Theory]
    [InlineData(PublishedConfigs.Llama2_7B, 6_738_415_616L)]
    [InlineData(PublishedConfigs.Llama32_1B, 1_235_814_400L)]
    [InlineData(PublishedConfigs.Qwen25_3B, 3_085_938_688L)]
    public void Published_parameter_counts_on_the_meta_device(string json, long expected)
    {
        var config = ModelConfig.Parse(json);
        using var model = CausalLanguageModel.Create(config, torch.META, torch.ScalarType.BFloat16);
        var counts = model.CountParameters();
        Assert.Equal(expected, counts.Total);
        Assert.Equal(expected, counts.Trainable);
        Assert.All(model.parameters(), p => Assert.True(p.is_meta));
    }

    [Fact]
    public void Parses_llama3_rope_scaling_and_gqa()
    {
        var config = ModelConfig.Parse(PublishedConfigs.Llama32_1B);
        Assert.Equal(ModelFamily.Llama, config.Family);
        Assert.Equal(8, config.NumKeyValueHeads);
        Assert.Equal(64, config.HeadDim);
        Assert.True(config.TieWordEmbeddings);
        Assert.Equal(new RopeScaling("llama3", 32, 1, 4, 8192), config.RopeScaling);
        Assert.Equal(torch.ScalarType.BFloat16, config.DefaultScalarType);
        Assert.Equal([128001], config.EosTokenIds);
    }

    [Fact]
    public void Qwen2_has_qkv_biases_and_ignores_an_unused_sliding_window()
    {
        var config = ModelConfig.Parse(PublishedConfigs.Qwen25_3B);
        Assert.True(config.QkvBias);
        Assert.False(config.OutputProjectionBias);
        Assert.Null(config.SlidingWindow);
        using var model = CausalLanguageModel.Create(config, torch.META, torch.ScalarType.BFloat16);
        var names = model.named_parameters().Select(p => p.name).ToHashSet();
        Assert.Contains("model.layers.0.self_attn.q_proj.bias", names);
        Assert.DoesNotContain("model.layers.0.self_attn.o_proj.bias", names);
        Assert.DoesNotContain("lm_head.weight", names); // tied: shared with model.embed_tokens.weight
    }

    [Fact]
    public void Json_round_trip_keeps_every_field()
    {
        var config = ModelConfig.Parse(PublishedConfigs.Llama32_1B);
        var reparsed = ModelConfig.Parse(config.ToJson());
        Assert.Equal(config with { EosTokenIds = [] }, reparsed with { EosTokenIds = [] });
        Assert.Equal(config.EosTokenIds, reparsed.EosTokenIds);
        Assert.Equal(config.ToJson(), reparsed.ToJson());
    }

    [Theory]
    [InlineData("\"model_type\":\"llama\"", "\"model_type\":\"gpt_neox\"", "model_type")]
    [InlineData("\"num_attention_heads\":32", "\"num_attention_heads\":30", "num_attention_heads")]
    [InlineData("\"num_key_value_heads\":32", "\"num_key_value_heads\":5", "num_key_value_heads")]
    [InlineData("\"hidden_size\":4096", "\"hidden_size\":\"big\"", "hidden_size")]
    [InlineData("\"vocab_size\":32000", "\"vocab_size\":0", "vocab_size")]
    [InlineData("\"rope_scaling\":null", "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}", "rope_scaling.rope_type")]
    [InlineData("\"torch_dtype\":\"float16\"", "\"torch_dtype\":\"int8\"", "torch_dtype")]
    [InlineData("\"eos_token_id\":2", "\"eos_token_id\":32000", "eos_token_id")]
    public void Inconsistent_or_unsupported_values_are_rejected_naming_the_field(string original, string replacement, string field)
    {
        var json = PublishedConfigs.Llama2_7B.Replace(original, replacement);
        Assert.NotEqual(PublishedConfigs.Llama2_7B, json);
        var error = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(json, "/models/x/config.json"));
        Assert.Equal(field, error.Field);
        Assert.Contains(field, error.Message);
        Assert.Contains("/models/x/config.json", error.Message);
    }

    [Fact]
    public void Missing_required_field_is_named()
    {
        var json = PublishedConfigs.Llama2_7B.Replace("\"intermediate_size\":11008,", "");
        var error = Assert.Throws<ModelConfigException>(() => ModelConfig.Parse(json));
        Assert.Equal("intermediate_size", error.Field);
    }
}
