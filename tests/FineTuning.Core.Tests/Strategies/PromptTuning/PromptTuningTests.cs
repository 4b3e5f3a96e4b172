using System.Globalization;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.PromptTuning;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Training;
using Xunit;
using static FineTuning.Core.Tests.Strategies.PromptLearningTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.PromptTuning;

public sealed class PromptTuningTests
{
    private static PromptTuningStrategy Apply(CausalLanguageModel model, PromptTuningOptions options, StrategyContext? context = null)
    {
        var strategy = new PromptTuningStrategy(options);
        strategy.Apply(model, context ?? StrategyContext.Empty);
        return strategy;
    }

    [Fact]
    public void Trains_T_times_hidden_parameters_and_freezes_the_base()
    {
        using var model = TinyModels.Create();
        var total = model.CountParameters().Total;
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 5 });

        // Tiny config: hidden 32, so 5 virtual tokens are 5 × 32 = 160 parameters, all trainable, added to "all".
        var trainable = Assert.Single(strategy.TrainableParameters());
        Assert.Equal("prompt_encoder.default.embedding.weight", trainable.Name);
        Assert.Equal([5L, 32L], trainable.Parameter.shape);
        Assert.Equal(ScalarType.Float32, trainable.Parameter.dtype);
        Assert.Equal(new ParameterSummary(160, total + 160), model.CountParameters());
        Assert.All(model.named_parameters().Where(p => p.name.StartsWith("model.", StringComparison.Ordinal) || p.name.StartsWith("lm_head", StringComparison.Ordinal)), p => Assert.False(p.parameter.requires_grad, p.name));
    }

    // PEFT's published numbers: MetaMathQA (meta-llama/Llama-3.2-3B, 200 virtual tokens, base 3,212,749,824) and
    // package_reference/prompt_tuning.md (bigscience/bloomz-560m: hidden 1024, 24 layers, 16 heads; 8 tokens → 8,192).
    [Fact]
    public void Counts_PEFTs_published_Llama_3_2_3B_prompt_tuning_numbers()
    {
        using var model = Meta(PublishedConfigs.Llama32_3B);
        Assert.Equal(3_212_749_824L, model.CountParameters().Total);
        Apply(model, new PromptTuningOptions { NumVirtualTokens = 200 });
        Assert.Equal(new ParameterSummary(614_400, 3_212_749_824L + 614_400), model.CountParameters());
        Assert.Equal("trainable params: 614,400 || all params: 3,213,364,224 || trainable%: 0.0191", model.CountParameters().ToPeftLine());

        using var bloomShaped = CausalLanguageModel.Create(Shaped(hidden: 1024, layers: 24, heads: 16, kvHeads: 16), META);
        Assert.Equal(8_192, Apply(bloomShaped, new PromptTuningOptions { NumVirtualTokens = 8 }).TrainableParameters().Sum(p => p.Parameter.numel()));
    }

    [Theory]
    [InlineData(new[] { 1, 2, 3 }, 7, new[] { 1, 2, 3, 1, 2, 3, 1 })]
    [InlineData(new[] { 1, 2, 3 }, 3, new[] { 1, 2, 3 })]
    [InlineData(new[] { 1, 2, 3, 4, 5 }, 3, new[] { 1, 2, 3 })]
    [InlineData(new[] { 9 }, 4, new[] { 9, 9, 9, 9 })]
    public void Text_init_ids_are_cut_or_repeated_as_PEFT_does(int[] text, int virtualTokens, int[] expected) =>
        Assert.Equal(expected, PromptTuningStrategy.TextInitIds(text, virtualTokens));

    [Theory]
    [InlineData(2)]
    [InlineData(9)]
    public void Text_init_copies_the_word_embeddings_of_the_repeated_or_cut_text(int virtualTokens)
    {
        using var model = TinyModels.Preset();
        var tokenizer = TrainingData.Gpt2;
        const string text = "map red blue";
        var ids = tokenizer.Encode(text);
        Assert.Equal(3, ids.Count); // " red", " blue" and "map": 3 GPT-2 tokens, no BOS.
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = virtualTokens, Init = PromptTuningInit.Text, InitText = text }, new StrategyContext { Tokenizer = tokenizer });

        // By hand: 2 tokens → the first two ids; 9 tokens → the three ids three times.
        var expected = virtualTokens == 2 ? new[] { ids[0], ids[1] } : [.. ids, .. ids, .. ids];
        var weight = strategy.Embedding!.Weight;
        var table = model.Body.EmbedTokens.weight!;
        for (var t = 0; t < virtualTokens; t++)
        {
            Assert.True(weight[t].eq(table[expected[t]]).all().item<bool>(), $"virtual token {t}");
        }
    }

    [Fact]
    public void Sample_vocab_init_copies_rows_of_the_embedding_table_and_random_init_is_standard_normal()
    {
        using var model = TinyModels.Create();
        var sampled = Apply(model, new PromptTuningOptions { NumVirtualTokens = 6, Init = PromptTuningInit.SampleVocab, Seed = 3 }).Embedding!.Weight;
        var table = model.Body.EmbedTokens.weight!;
        for (var t = 0; t < 6; t++)
        {
            Assert.True(table.eq(sampled[t]).all(1).any().item<bool>(), $"virtual token {t} is no row of the table");
        }

        using var large = TinyModels.Create(TinyModels.Config() with { HiddenSize = 64 });
        var random = Apply(large, new PromptTuningOptions { NumVirtualTokens = 200 }).Embedding!.Weight;
        Assert.InRange(random.mean().item<float>(), -0.03, 0.03); // 12,800 draws: standard error 0.009
        Assert.InRange(random.std().item<float>(), 0.97, 1.03);
    }

    [Fact]
    public void Text_init_without_a_tokenizer_and_invalid_options_are_refused()
    {
        using var model = TinyModels.Create();
        var error = Assert.Throws<InvalidOptionException>(() => Apply(model, new PromptTuningOptions { Init = PromptTuningInit.Text, InitText = "hello" }));
        Assert.Equal("PromptTuningOptions.Init", error.Option);
        Assert.Null(model.InputEmbeddingsHook);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("prompt_encoder", StringComparison.Ordinal));
        Assert.Equal("PromptTuningOptions.NumVirtualTokens", Assert.Throws<InvalidOptionException>(() => new PromptTuningStrategy(new PromptTuningOptions { NumVirtualTokens = 0 })).Option);
        Assert.Equal("PromptTuningOptions.InitText", Assert.Throws<InvalidOptionException>(() => new PromptTuningStrategy(new PromptTuningOptions { Init = PromptTuningInit.Text })).Option);
    }

    [Fact]
    public void The_model_output_equals_the_base_run_on_the_virtual_embeddings_followed_by_the_tokens()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 3 });
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 }, [2, 8]);
        var withHook = FullLogits(model, mask);

        // The base on [virtual tokens; token embeddings] with the mask extended by ones, the virtual logits dropped.
        model.InputEmbeddingsHook = null;
        using (no_grad())
        {
            var ids = tensor(Rows.SelectMany(r => r).ToArray(), [2, 8], dtype: ScalarType.Int64);
            var embeddings = cat([strategy.Embedding!.Weight.unsqueeze(0).expand(2, -1, -1), model.Body.EmbedTokens.call(ids)], dim: 1);
            var fullMask = cat([ones(2, 3, dtype: ScalarType.Int64), mask], dim: 1);
            var expected = model.call(new ModelInput { InputEmbeddings = embeddings, AttentionMask = fullMask }).Logits.narrow(1, 3, 8);
            Assert.Equal(expected.shape, withHook.shape);
            Assert.True(expected.allclose(withHook, rtol: 1e-5, atol: 1e-6));
        }

        model.InputEmbeddingsHook = strategy.Embedding;
        Assert.False(FullLogits(model).allclose(FullLogitsWithout(model), atol: 1e-3), "the virtual tokens change nothing");
    }

    private static Tensor FullLogitsWithout(CausalLanguageModel model)
    {
        var hook = model.InputEmbeddingsHook;
        model.InputEmbeddingsHook = null;
        try
        {
            return FullLogits(model);
        }
        finally
        {
            model.InputEmbeddingsHook = hook;
        }
    }

    [Fact]
    public void Kv_cache_decoding_equals_full_recomputation()
    {
        using var model = TinyModels.Create();
        Apply(model, new PromptTuningOptions { NumVirtualTokens = 4 });
        var full = FullLogits(model);
        var cached = CachedLogits(model, promptLength: 3);
        Assert.True(full.allclose(cached, rtol: 1e-5, atol: 1e-5), $"max diff {(full - cached).abs().max().item<float>()}");
    }

    [Fact]
    public void Checkpointed_gradients_equal_the_plain_ones()
    {
        using var model = TinyModels.Create();
        Apply(model, new PromptTuningOptions { NumVirtualTokens = 4 });
        var plain = Gradients(model, checkpointed: false);
        var checkpointed = Gradients(model, checkpointed: true);
        Assert.Equal(["prompt_encoder.default.embedding.weight"], plain.Keys);
        TrainingData.AssertClose(plain, checkpointed, rtol: 1e-5, atol: 1e-7);
    }

    [Fact]
    public void Training_moves_only_the_virtual_tokens_and_packing_is_refused()
    {
        using var model = TinyModels.Create();
        var before = TrainingData.Snapshot(model);
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 4 });
        var start = strategy.Embedding!.Weight.detach().clone();
        var lossBefore = TrainingDataLoss(model);
        var result = TrainFewSteps(model, strategy, learningRate: 0.2); // N(0, 1) virtual tokens need large steps to move
        Assert.Equal(8, result.Steps);
        Assert.True(TrainingDataLoss(model) < lossBefore - 0.03, $"loss {TrainingDataLoss(model)} vs {lossBefore} before"); // random tokens: little to learn from a prompt
        AssertBaseUnchanged(before, model);
        Assert.False(start.eq(strategy.Embedding.Weight).all().item<bool>());

        var error = Assert.Throws<InvalidOptionException>(() => TrainFewSteps(model, strategy, packing: true));
        Assert.Equal("TrainingOptions.Packing", error.Option);
    }

    [Fact]
    public void Remove_restores_the_base_and_merging_is_refused()
    {
        using var model = TinyModels.Create();
        var logits = FullLogits(model);
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 4 });
        Assert.Throws<NotSupportedException>(strategy.MergeAndUnload);
        strategy.Remove();
        Assert.Null(model.InputEmbeddingsHook);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("prompt_encoder", StringComparison.Ordinal));
        Assert.All(model.parameters(), p => Assert.True(p.requires_grad));
        Assert.True(logits.eq(FullLogits(model)).all().item<bool>());
    }

    [Fact]
    public void Saves_PEFTs_files_and_loads_them_back_bit_exact()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 4 });
        var logits = FullLogits(model);
        strategy.Save(temp.Path);

        Assert.Equal("""
            {
              "auto_mapping": null,
              "base_model_name_or_path": null,
              "inference_mode": true,
              "modules_to_save": null,
              "num_attention_heads": 4,
              "num_layers": 2,
              "num_transformer_submodules": 1,
              "num_virtual_tokens": 4,
              "peft_type": "PROMPT_TUNING",
              "prompt_tuning_init": "RANDOM",
              "prompt_tuning_init_text": null,
              "revision": null,
              "task_type": "CAUSAL_LM",
              "token_dim": 32,
              "tokenizer_kwargs": null,
              "tokenizer_name_or_path": null
            }
            """, File.ReadAllText(temp.File(AdapterLoader.ConfigFileName)));
        using (var reader = new SafetensorsReader(temp.File(PeftAdapterFiles.WeightsFileName)))
        {
            Assert.Equal(["prompt_embeddings"], reader.TensorNames);
            Assert.Equal(ScalarType.Float32, reader.GetInfo("prompt_embeddings").ScalarType);
            Assert.Equal([4L, 32L], reader.GetInfo("prompt_embeddings").Shape.ToArray());
            Assert.Equal("pt", reader.Metadata["format"]);
        }

        using var fresh = TinyModels.Create();
        var loaded = Assert.IsType<PromptTuningStrategy>(AdapterLoader.Load(temp.Path, fresh));
        Assert.Empty(loaded.TrainableParameters());
        Assert.True(strategy.Embedding!.Weight.eq(loaded.Embedding!.Weight).all().item<bool>());
        Assert.True(logits.eq(FullLogits(fresh)).all().item<bool>());
    }

    [Fact]
    public void A_hand_written_PEFT_folder_loads_and_a_mismatched_one_is_refused()
    {
        using var temp = new TempDirectory();
        var values = arange(3 * 32, dtype: ScalarType.Float32).reshape(3, 32) / 100;
        SafetensorsWriter.Write(temp.File(PeftAdapterFiles.WeightsFileName), [new("prompt_embeddings", values)], SafetensorsWriter.DefaultMetadata);

        // As PEFT's MetaMathQA experiment files look (TEXT init, inference_mode false, no modules_to_save key).
        File.WriteAllText(temp.File(AdapterLoader.ConfigFileName), """
            {"auto_mapping": null, "base_model_name_or_path": "tiny", "inference_mode": false, "num_attention_heads": 4,
             "num_layers": 2, "num_transformer_submodules": 1, "num_virtual_tokens": 3, "peft_type": "PROMPT_TUNING",
             "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": "Classify:", "revision": null, "task_type": "CAUSAL_LM",
             "token_dim": 32, "tokenizer_kwargs": null, "tokenizer_name_or_path": "tiny", "peft_version": "0.17.0"}
            """);
        using var model = TinyModels.Create();
        var strategy = Assert.IsType<PromptTuningStrategy>(AdapterLoader.Load(temp.Path, model, isTrainable: true));
        Assert.True(values.eq(strategy.Embedding!.Weight).all().item<bool>());
        Assert.Equal(PromptTuningInit.Text, strategy.Options.Init);
        Assert.Equal(96, strategy.TrainableParameters().Sum(p => p.Parameter.numel()));
        strategy.Remove();

        File.WriteAllText(temp.File(AdapterLoader.ConfigFileName), """{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 3, "token_dim": 48, "num_layers": 2}""");
        var error = Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(temp.Path, model));
        Assert.Contains("token_dim is 48", error.Message, StringComparison.Ordinal);
        Assert.Null(model.InputEmbeddingsHook);

        File.WriteAllText(temp.File(AdapterLoader.ConfigFileName), """{"peft_type": "PROMPT_TUNING", "num_virtual_tokens": 5, "token_dim": 32, "num_layers": 2}""");
        var shape = Assert.Throws<CheckpointFormatException>(() => AdapterLoader.Load(temp.Path, model));
        Assert.Contains("prompt_embeddings", shape.Message, StringComparison.Ordinal);
        Assert.Null(model.InputEmbeddingsHook);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.StartsWith("prompt_encoder", StringComparison.Ordinal));
    }

    [Fact]
    public void Works_on_a_bf16_model_with_fp32_virtual_tokens()
    {
        using var model = TinyModels.Create(dtype: ScalarType.BFloat16);
        var strategy = Apply(model, new PromptTuningOptions { NumVirtualTokens = 4, Init = PromptTuningInit.SampleVocab });
        Assert.Equal(ScalarType.Float32, strategy.Embedding!.Weight.dtype);
        var full = FullLogits(model);
        var cached = CachedLogits(model, promptLength: 5);
        Assert.True(full.allclose(cached, rtol: 0.05, atol: 0.05), string.Create(CultureInfo.InvariantCulture, $"max diff {(full - cached).abs().max().item<float>()}"));
    }
}
