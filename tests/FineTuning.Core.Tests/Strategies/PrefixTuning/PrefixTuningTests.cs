using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Training;
using Xunit;
using static FineTuning.Core.Tests.Strategies.PromptLearningTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.PrefixTuning;

/// <summary>
/// Prefix tuning on the tiny config: hidden 32, 4 query heads of 8, 2 key/value heads (kv_dim 16), 2 layers.
/// </summary>
public sealed class PrefixTuningTests
{
    private static PrefixTuningStrategy Apply(CausalLanguageModel model, PrefixTuningOptions options)
    {
        var strategy = new PrefixTuningStrategy(options);
        strategy.Apply(model, StrategyContext.Empty);
        return strategy;
    }

    private static long Trainable(IParameterStrategy strategy) => strategy.TrainableParameters().Sum(p => p.Parameter.numel());

    [Theory]
    [InlineData(false, null, 5L * 2 * 2 * 16)] // T·layers·2·kv_dim = 320
    [InlineData(true, 12, (5L * 16) + ((16 * 12) + 12) + ((12 * 64) + 64))] // embedding + Linear(16→12) + Linear(12→64) = 1,116
    [InlineData(true, null, (5L * 16) + ((16 * 16) + 16) + ((16 * 64) + 64))] // encoder_hidden_size defaults to kv_dim: 1,440
    public void Trains_PEFTs_parameter_count_and_freezes_the_base(bool projection, int? hidden, long expected)
    {
        using var model = TinyModels.Create();
        var total = model.CountParameters().Total;
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 5, PrefixProjection = projection, EncoderHiddenSize = hidden });
        Assert.Equal(expected, Trainable(strategy));
        Assert.Equal(new ParameterSummary(expected, total + expected), model.CountParameters());
        Assert.All(strategy.TrainableParameters(), p => Assert.StartsWith("prompt_encoder.default.", p.Name));
        Assert.Equal(projection
            ? ["prompt_encoder.default.embedding.weight", "prompt_encoder.default.transform.0.weight", "prompt_encoder.default.transform.0.bias", "prompt_encoder.default.transform.2.weight", "prompt_encoder.default.transform.2.bias"]
            : ["prompt_encoder.default.embedding.weight"], strategy.TrainableParameters().Select(p => p.Name));
    }

    // PEFT's MetaMathQA results (meta-llama/Llama-3.2-3B: 28 layers, 8 KV heads of 128 → kv_dim 1024): 200 tokens →
    // 11,468,800, 50 tokens → 2,867,200. peft_model.py docstring (gpt2-large: 36 layers, hidden 1280, MHA): 20 → 1,843,200.
    // prefix_tuning.md and the CLM notebook (bloomz-560m: 24 layers, hidden 1024, MHA): 20 → 983,040, 30 → 1,474,560.
    [Fact]
    public void Counts_PEFTs_published_prefix_tuning_numbers()
    {
        using var llama = Meta(PublishedConfigs.Llama32_3B);
        var strategy = Apply(llama, new PrefixTuningOptions { NumVirtualTokens = 200 });
        Assert.Equal(new ParameterSummary(11_468_800, 3_212_749_824L + 11_468_800), llama.CountParameters());
        strategy.Remove();
        Assert.Equal(2_867_200, Trainable(Apply(llama, new PrefixTuningOptions { NumVirtualTokens = 50 })));

        using var gpt2Shaped = CausalLanguageModel.Create(Shaped(hidden: 1280, layers: 36, heads: 20, kvHeads: 20), META);
        Assert.Equal(1_843_200, Trainable(Apply(gpt2Shaped, new PrefixTuningOptions())));
        using var bloomShaped = CausalLanguageModel.Create(Shaped(hidden: 1024, layers: 24, heads: 16, kvHeads: 16), META);
        var bloom = Apply(bloomShaped, new PrefixTuningOptions());
        Assert.Equal(983_040, Trainable(bloom));
        bloom.Remove();
        Assert.Equal(1_474_560, Trainable(Apply(bloomShaped, new PrefixTuningOptions { NumVirtualTokens = 30 })));

        // With projection on Llama-3.2-3B (hidden h = kv_dim 1024 by default): 200·1024 + (1024·1024 + 1024) + (1024·57,344 + 57,344).
        var projected = new PrefixTuningOptions { NumVirtualTokens = 200, PrefixProjection = true };
        Assert.Equal(204_800L + 1_049_600 + 58_777_600, PrefixTuningStrategy.ParameterCount(projected, llama.Config));
        using var llama2 = Meta(PublishedConfigs.Llama32_3B);
        Assert.Equal(204_800L + 1_049_600 + 58_777_600, Trainable(Apply(llama2, projected)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Each_layer_gets_its_keys_and_values_in_PEFTs_order(bool projection)
    {
        using var model = TinyModels.Create();
        var encoder = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 3, PrefixProjection = projection }).Encoder!;
        using var _ = no_grad();
        var output = encoder.Encode();
        Assert.Equal([3L, 2 * 2 * 16], output.shape);

        // PEFT's get_prompt: view(batch, T, layers·2, kv_heads, head_dim).permute([2, 0, 3, 1, 4]).split(2).
        var peft = output.unsqueeze(0).expand(2, -1, -1).reshape(2, 3, 4, 2, 8).permute(2, 0, 3, 1, 4);
        for (var layer = 0; layer < 2; layer++)
        {
            var (keys, values) = encoder.GetPrefix(layer, 2, ScalarType.Float32);
            Assert.Equal([2L, 2, 3, 8], keys.shape);
            Assert.True(keys.allclose(peft[2 * layer], rtol: 1e-6, atol: 1e-6), $"keys of layer {layer}");
            Assert.True(values.allclose(peft[(2 * layer) + 1], rtol: 1e-6, atol: 1e-6), $"values of layer {layer}");
        }
    }

    [Fact]
    public void The_prefix_acts_as_PEFTs_past_key_values_would()
    {
        // The base model given the prefix keys and values as an already filled cache (HF's past_key_values: no rotary
        // on them, every real token attends to them, positions start after them) computes what the prefix model does.
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 3 });
        var withPrefix = FullLogits(model);
        model.SetAttentionPrefix(null);
        using (no_grad())
        using (var cache = new KeyValueCache(2))
        {
            for (var layer = 0; layer < 2; layer++)
            {
                var (keys, values) = strategy.Encoder!.GetPrefix(layer, 2, ScalarType.Float32);
                cache.Append(layer, keys, values);
            }

            var ids = tensor(Rows.SelectMany(r => r).ToArray(), [2, 8], dtype: ScalarType.Int64);
            var expected = model.call(new ModelInput { InputIds = ids, Cache = cache }).Logits;
            Assert.True(expected.allclose(withPrefix, rtol: 1e-5, atol: 1e-6), $"max diff {(expected - withPrefix).abs().max().item<float>()}");
        }

        model.SetAttentionPrefix(strategy.Encoder);
        Assert.False(withPrefix.allclose(FullLogitsWithoutPrefix(model), atol: 1e-3), "the prefix changes nothing");
    }

    private static Tensor FullLogitsWithoutPrefix(CausalLanguageModel model)
    {
        var prefix = model.AttentionPrefix;
        model.SetAttentionPrefix(null);
        try
        {
            return FullLogits(model);
        }
        finally
        {
            model.SetAttentionPrefix(prefix);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Kv_cache_decoding_equals_full_recomputation(bool projection)
    {
        using var model = TinyModels.Create();
        Apply(model, new PrefixTuningOptions { NumVirtualTokens = 4, PrefixProjection = projection });
        var full = FullLogits(model);
        var cached = CachedLogits(model, promptLength: 3);
        Assert.True(full.allclose(cached, rtol: 1e-5, atol: 1e-5), $"max diff {(full - cached).abs().max().item<float>()}");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Checkpointed_gradients_equal_the_plain_ones(bool projection)
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 4, PrefixProjection = projection });
        var plain = Gradients(model, checkpointed: false);
        var checkpointed = Gradients(model, checkpointed: true);
        Assert.Equal(strategy.TrainableParameters().Select(p => p.Name).Order(), plain.Keys.Order());
        Assert.All(plain.Values, g => Assert.True(g.abs().max().item<float>() > 0));
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void Training_with_packing_moves_only_the_prefix()
    {
        using var model = TinyModels.Create();
        var before = TrainingData.Snapshot(model);
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 4, PrefixProjection = true });
        var lossBefore = TrainingDataLoss(model);
        var result = TrainFewSteps(model, strategy, packing: true);
        Assert.Equal(8, result.Steps);
        Assert.True(TrainingDataLoss(model) < lossBefore - 0.1, $"loss {TrainingDataLoss(model)} vs {lossBefore} before");
        AssertBaseUnchanged(before, model);
    }

    [Fact]
    public void Zero_init_zeroes_every_prefix_and_remove_restores_the_base()
    {
        using var model = TinyModels.Create();
        var logits = FullLogits(model);
        foreach (var projection in new[] { false, true })
        {
            var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 3, PrefixProjection = projection, Init = PrefixTuningInit.Zero });
            using (no_grad())
            {
                Assert.Equal(0, strategy.Encoder!.Encode().abs().max().item<float>());
            }

            Assert.Throws<NotSupportedException>(strategy.MergeAndUnload);
            strategy.Remove();
            Assert.Null(model.AttentionPrefix);
            Assert.All(model.Body.Layers, l => Assert.Null(l.SelfAttention.Prefix));
            Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("prompt_encoder", StringComparison.Ordinal));
            Assert.True(logits.eq(FullLogits(model)).all().item<bool>());
        }
    }

    [Fact]
    public void Saves_PEFTs_files_and_loads_them_back_bit_exact()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 3 });
        var logits = FullLogits(model);
        strategy.Save(temp.Path);

        Assert.Equal("""
            {
              "auto_mapping": null,
              "base_model_name_or_path": null,
              "encoder_hidden_size": 16,
              "inference_mode": true,
              "init_weights": null,
              "modules_to_save": null,
              "num_attention_heads": 2,
              "num_layers": 2,
              "num_transformer_submodules": 1,
              "num_virtual_tokens": 3,
              "peft_type": "PREFIX_TUNING",
              "prefix_projection": false,
              "revision": null,
              "task_type": "CAUSAL_LM",
              "token_dim": 16
            }
            """, File.ReadAllText(temp.File(AdapterLoader.ConfigFileName)));
        using (var reader = new SafetensorsReader(temp.File(PeftAdapterFiles.WeightsFileName)))
        {
            Assert.Equal(["prompt_embeddings"], reader.TensorNames);
            Assert.Equal(ScalarType.Float32, reader.GetInfo("prompt_embeddings").ScalarType);
            Assert.Equal([3L, 64L], reader.GetInfo("prompt_embeddings").Shape.ToArray());
        }

        Assert.False(File.Exists(temp.File(PrefixTuningStrategy.EncoderFileName)));
        using var fresh = TinyModels.Create();
        var loaded = Assert.IsType<PrefixTuningStrategy>(AdapterLoader.Load(temp.Path, fresh));
        Assert.Empty(loaded.TrainableParameters());
        Assert.True(strategy.Encoder!.EmbeddingWeight.eq(loaded.Encoder!.EmbeddingWeight).all().item<bool>());
        Assert.True(logits.eq(FullLogits(fresh)).all().item<bool>());
    }

    [Fact]
    public void With_projection_only_the_MLPs_output_is_saved_and_it_loads_without_the_MLP()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PrefixTuningOptions { NumVirtualTokens = 3, PrefixProjection = true, EncoderHiddenSize = 12 });
        var logits = FullLogits(model);
        strategy.Save(temp.Path);

        // PEFT's get_prompt_embedding_to_save: transform(embedding) = tanh(E·W1ᵀ + b1)·W2ᵀ + b2, worked here by hand.
        var (down, up) = strategy.Encoder!.Projection!.Value;
        using var saved = new SafetensorsReader(temp.File(PeftAdapterFiles.WeightsFileName)).ReadTensor("prompt_embeddings");
        using (no_grad())
        {
            var hidden = (strategy.Encoder.EmbeddingWeight.matmul(down.weight!.t()) + down.bias!).tanh();
            var expected = hidden.matmul(up.weight!.t()) + up.bias!;
            Assert.Equal([3L, 64L], saved.shape);
            Assert.True(expected.allclose(saved, rtol: 1e-5, atol: 1e-6));
        }

        // PEFT (inference mode) and AdapterLoader build the plain table from it: same outputs, no MLP.
        using var fresh = TinyModels.Create();
        var loaded = Assert.IsType<PrefixTuningStrategy>(AdapterLoader.Load(temp.Path, fresh));
        Assert.Null(loaded.Encoder!.Projection);
        Assert.True(saved.eq(loaded.Encoder.EmbeddingWeight).all().item<bool>());
        Assert.Equal(3L * 64, loaded.Encoder.parameters().Sum(p => p.numel()));
        Assert.True(logits.allclose(FullLogits(fresh), rtol: 1e-5, atol: 1e-5));

        // A training checkpoint resumes the MLP itself from prefix_encoder.safetensors (this library's addition).
        using var resumed = TinyModels.Create();
        var again = Apply(resumed, new PrefixTuningOptions { NumVirtualTokens = 3, PrefixProjection = true, EncoderHiddenSize = 12, Seed = 9 });
        again.Load(temp.Path);
        var original = strategy.TrainableParameters().ToDictionary(p => p.Name, p => p.Parameter);
        Assert.All(again.TrainableParameters(), p => Assert.True(original[p.Name].eq(p.Parameter).all().item<bool>(), p.Name));
        File.Delete(temp.File(PrefixTuningStrategy.EncoderFileName));
        Assert.Contains("FromPretrained", Assert.Throws<CheckpointFormatException>(() => again.Load(temp.Path)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_hand_written_PEFT_folder_with_pre_GQA_dimensions_loads()
    {
        // As the MetaMathQA experiment files give them (token_dim = hidden, the query heads); PEFT's
        // _prepare_prompt_learning_config turns them into kv_heads × head_dim = 2 × 8 = 16 and 2 heads.
        using var temp = new TempDirectory();
        var values = arange(3 * 64, dtype: ScalarType.Float32).reshape(3, 64) / 100;
        SafetensorsWriter.Write(temp.File(PeftAdapterFiles.WeightsFileName), [new("prompt_embeddings", values)], SafetensorsWriter.DefaultMetadata);
        File.WriteAllText(temp.File(AdapterLoader.ConfigFileName), """
            {"auto_mapping": null, "base_model_name_or_path": null, "encoder_hidden_size": 32, "inference_mode": false,
             "num_attention_heads": 4, "num_layers": 2, "num_transformer_submodules": 1, "num_virtual_tokens": 3,
             "peft_type": "PREFIX_TUNING", "prefix_projection": true, "revision": null, "task_type": "CAUSAL_LM", "token_dim": 32}
            """);
        using var model = TinyModels.Create();
        var strategy = Assert.IsType<PrefixTuningStrategy>(AdapterLoader.Load(temp.Path, model));
        Assert.True(values.eq(strategy.Encoder!.EmbeddingWeight).all().item<bool>());
        var (keys, values0) = strategy.Encoder.GetPrefix(1, 1, ScalarType.Float32);

        // Layer 1's keys are columns 32..47 of each row, values 48..63; key head 1 of token 2 = row 2, columns 40..47.
        Assert.True(keys[0, 1, 2].eq(values[2].narrow(0, 40, 8)).all().item<bool>());
        Assert.True(values0[0, 0, 0].eq(values[0].narrow(0, 48, 8)).all().item<bool>());
        strategy.Remove();

        File.WriteAllText(temp.File(AdapterLoader.ConfigFileName), """{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 3, "token_dim": 16, "num_attention_heads": 2, "num_layers": 3}""");
        Assert.Contains("num_layers is 3", Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(temp.Path, model)).Message, StringComparison.Ordinal);
        Assert.Null(model.AttentionPrefix);
    }
}
