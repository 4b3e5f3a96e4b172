using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Strategies.Lora;
using FineTuning.Core.Training;
using Microsoft.Extensions.Logging;
using TorchSharp.Modules;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.QLora;

public class QLoraStrategyTests
{
    // Tiny test model per layer (hidden 32, kv 16, MLP 64): r·(in + out) summed over q, k, v, o, gate, up, down = 512·r.
    private const int LoraPerRankPerLayer = (32 + 32) + (32 + 16) + (32 + 16) + (32 + 32) + (3 * (32 + 64));

    private static QLoraOptions Options(ScalarType compute = ScalarType.Float32, int r = 4) => new()
    {
        Lora = QLoraOptions.Default.Lora with { R = r, Alpha = 2 * r },
        Quantization = QuantizationOptions.Default with { ComputeDType = compute },
    };

    private static QLoraStrategy Apply(CausalLanguageModel model, QLoraOptions? options = null, ILogger? logger = null)
    {
        var strategy = new QLoraStrategy(options);
        strategy.Apply(model, logger is null ? StrategyContext.Empty : new StrategyContext { Logger = logger });
        return strategy;
    }

    /// <summary>QLoRA applied with random B matrices, so the adapter changes the output.</summary>
    private static QLoraStrategy Adapted(CausalLanguageModel model, QLoraOptions? options = null, ILogger? logger = null, double std = 0.2)
    {
        var strategy = Apply(model, options ?? Options(), logger);
        Randomize(strategy.Lora, std: std);
        return strategy;
    }

    /// <summary>A plain model whose projections hold the 4-bit model's weights dequantized in <paramref name="dtype"/> (stored in fp32).</summary>
    private static CausalLanguageModel Dequantized(CausalLanguageModel quantized, ScalarType dtype)
    {
        var reference = TinyModels.Create();
        using var _ = no_grad();
        foreach (var (name, module) in quantized.named_modules().Where(m => m.module is Linear4Bit))
        {
            using var weight = ((Linear4Bit)module).Dequantize(dtype);
            var slot = name.Replace(".base_layer", "", StringComparison.Ordinal);
            ((Linear)reference.LinearSlots().Single(s => s.FullName == slot).Module).weight!.copy_(weight);
        }

        return reference;
    }

    private static double RelativeDiff(Tensor actual, Tensor expected) => MaxDiff(actual, expected) / expected.abs().max().item<float>();

    [Theory]
    [InlineData(ScalarType.Float32, 1e-6)]
    [InlineData(ScalarType.BFloat16, 2e-2)]
    public void At_init_QLoRA_computes_exactly_with_the_dequantized_base(ScalarType compute, double tolerance)
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, Options(compute));

        Assert.Equal(2 * 7, strategy.QuantizedModules.Count);
        Assert.All(strategy.Lora.LoraLayers.Values, l => Assert.Equal(compute, Assert.IsType<Linear4Bit>(l.BaseLayer).ComputeDType));
        Assert.Equal(2 * 7, strategy.Lora.LoraLayers.Count);
        Assert.IsType<Linear>(model.LmHead);
        Assert.All(strategy.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));

        using var reference = Dequantized(model, compute);
        using var expected = Logits(reference);
        using var actual = Logits(model);
        Assert.True(RelativeDiff(actual, expected) < tolerance, $"relative difference {RelativeDiff(actual, expected)}");
    }

    [Fact]
    public void Counts_are_PEFTs_with_4_bit_weights_counted_unpacked()
    {
        using var model = TinyModels.Create();
        var total = model.CountParameters().Total;
        var strategy = Apply(model, Options(r: 16));
        var counts = model.CountParameters();
        Assert.Equal(2L * 16 * LoraPerRankPerLayer, counts.Trainable);
        Assert.Equal(total + counts.Trainable, counts.Total);
        Assert.Equal(counts.Trainable, strategy.TrainableParameters().Sum(p => p.Parameter.numel()));
    }

    // Llama-2-7B (6,738,415,616 parameters) with the paper's r 64 on all seven projections: 32·64·(4·8192 + 3·(4096 +
    // 11008)) = 159,907,840 adapter parameters; PEFT counts each Params4bit unpacked (×2, PR #733), so the 4-bit total is
    // the 16-bit one plus the adapters.
    [Fact]
    public void The_paper_preset_on_Llama_2_7B_prints_the_published_line_on_the_meta_device()
    {
        using var model = CausalLanguageModel.Create(ModelConfig.Parse(PublishedConfigs.Llama2_7B), META, ScalarType.BFloat16);
        var strategy = Apply(model, QLoraOptions.PaperPreset);
        Assert.Empty(strategy.QuantizedModules);
        Assert.Equal("trainable params: 159,907,840 || all params: 6,898,323,456 || trainable%: 2.3181", model.CountParameters().ToPeftLine());
    }

    [Fact]
    public void Merging_exports_16_bit_weights_that_reproduce_the_unmerged_model()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Adapted(model);
        using var unmerged = Logits(model);
        using (var baseOnly = Dequantized(model, ScalarType.Float32))
        using (var baseLogits = Logits(baseOnly))
        {
            Assert.True(MaxDiff(unmerged, baseLogits) > 1e-2, "the adapter changes nothing");
        }

        strategy.MergeAndUnload();
        Assert.Null(strategy.Model);
        Assert.DoesNotContain(model.named_modules(), m => m.module is Linear4Bit or LoraLinear);
        Assert.All(model.named_parameters(), p => Assert.Equal(ScalarType.Float32, p.parameter.dtype));
        using var merged = Logits(model);
        Assert.True(MaxDiff(merged, unmerged) < 1e-4, $"merged differs by {MaxDiff(merged, unmerged)}");

        HuggingFaceModel.Save(model, temp.Path);
        Assert.False(QuantizedModelFiles.IsQuantizedFolder(temp.Path));
        using var reloaded = HuggingFaceModel.Load(temp.Path);
        using var reloadedLogits = Logits(reloaded);
        Assert.True(BitEqual(merged, reloadedLogits));
    }

    [Theory]
    [InlineData(null, ScalarType.BFloat16)]
    [InlineData(ScalarType.Float32, ScalarType.Float32)]
    public void A_merged_weight_is_the_dequantized_weight_plus_the_update_in_fp32(ScalarType? dequantizeAs, ScalarType expectedDequantization)
    {
        using var model = TinyModels.Create();
        var strategy = Adapted(model, Options(ScalarType.BFloat16));
        var expected = strategy.Lora.LoraLayers.ToDictionary(
            l => l.Key,
            l => ((Linear4Bit)l.Value.BaseLayer).Dequantize(expectedDequantization).to(ScalarType.Float32) + l.Value.DeltaWeight(LoraStrategy.DefaultAdapterName));
        strategy.MergeAndUnload(dequantizeAs);
        foreach (var (name, weight) in expected)
        {
            var merged = ((Linear)model.LinearSlots().Single(s => s.FullName == name).Module).weight!;
            Assert.True(BitEqual(weight, merged.detach()), name);
        }
    }

    [Fact]
    public void Merging_a_bf16_compute_model_uses_the_weights_its_forward_pass_used()
    {
        using var model = TinyModels.Create();
        var strategy = Adapted(model, Options(ScalarType.BFloat16));
        using var unmerged = Logits(model);
        strategy.MergeAndUnload();
        using var merged = Logits(model);

        // The merged fp32 model computes without the bf16 rounding of activations: close, not equal.
        Assert.True(RelativeDiff(merged, unmerged) < 2e-2, $"relative difference {RelativeDiff(merged, unmerged)}");
    }

    [Fact]
    public void Merging_and_requantizing_warns_and_stays_close_to_the_unmerged_model()
    {
        using var model = TinyModels.Create();
        var logger = new ListLogger();
        var strategy = Adapted(model, logger: logger, std: 0.05);
        using var unmerged = Logits(model);
        using var baseOnly = Dequantized(model, ScalarType.Float32);
        using var baseLogits = Logits(baseOnly);

        strategy.MergeAndRequantize();
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message == QLoraStrategy.RequantizeWarning);
        Assert.All(model.LinearSlots().Where(s => s.FullName != "lm_head"), s => Assert.IsType<Linear4Bit>(s.Module));
        using var requantized = Logits(model);

        // Rounding moves the outputs, by much less than the adapter moved them.
        var rounding = MaxDiff(requantized, unmerged);
        var update = MaxDiff(unmerged, baseLogits);
        Assert.True(rounding > 0, "re-quantization changed nothing");
        Assert.True(rounding < update / 2, $"rounding {rounding} vs the adapter's change {update}");
    }

    [Fact]
    public void Remove_leaves_the_4_bit_base_unless_the_full_precision_layers_were_kept()
    {
        using var model = TinyModels.Create();
        using var original = Logits(model);
        var strategy = Adapted(model);
        strategy.Remove();
        Assert.Null(strategy.Model);
        Assert.DoesNotContain(model.named_parameters(), p => p.name.Contains("lora_", StringComparison.Ordinal));
        Assert.Equal(2 * 7, model.named_modules().Count(m => m.module is Linear4Bit));

        using var kept = TinyModels.Create();
        var keeping = Adapted(kept, Options() with { KeepFullPrecisionBase = true });
        keeping.Remove();
        Assert.DoesNotContain(kept.named_modules(), m => m.module is Linear4Bit);
        using var restored = Logits(kept);
        Assert.True(BitEqual(original, restored));
    }

    [Fact]
    public void A_model_already_4_bit_is_used_as_it_is_and_a_different_setting_is_logged()
    {
        using var model = TinyModels.Create();
        ModelQuantizer.Quantize(model, new QuantizationOptions { Type = QuantizationType.FP4, ComputeDType = ScalarType.Float32 });
        using var before = Logits(model);
        var logger = new ListLogger();
        var strategy = Apply(model, Options(), logger);
        Assert.Empty(strategy.QuantizedModules);
        Assert.All(strategy.Lora.LoraLayers.Values, l => Assert.Equal(QuantizationType.FP4, ((Linear4Bit)l.BaseLayer).Type));
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Warning && e.Message.Contains("fp4", StringComparison.Ordinal) && e.Message.Contains("nf4", StringComparison.Ordinal));
        using var after = Logits(model);
        Assert.True(BitEqual(before, after));

        using var same = TinyModels.Create();
        ModelQuantizer.Quantize(same, Options().Quantization);
        var quiet = new ListLogger();
        Apply(same, Options(), quiet);
        Assert.Empty(quiet.Entries);
    }

    [Fact]
    public void Options_that_do_not_fit_the_model_leave_it_unquantized()
    {
        using var model = TinyModels.Create();
        var options = Options() with { Lora = Options().Lora with { TargetModules = LoraTargetModules.FromNames("query") } };
        var error = Assert.Throws<InvalidOptionException>(() => Apply(model, options));
        Assert.Equal("QLoraOptions.Lora.TargetModules", error.Option);
        Assert.DoesNotContain(model.named_modules(), m => m.module is Linear4Bit);
    }

    [Theory]
    [InlineData("r 0", "QLoraOptions.Lora.R")]
    [InlineData("blocksize 100", "QLoraOptions.Quantization.BlockSize")]
    [InlineData("pissa", "QLoraOptions.Lora.Init")]
    [InlineData("int8 compute", "QLoraOptions.Quantization.ComputeDType")]
    public void Invalid_options_name_the_option_under_QLoraOptions(string mistake, string option)
    {
        var options = mistake switch
        {
            "r 0" => QLoraOptions.Default with { Lora = QLoraOptions.Default.Lora with { R = 0 } },
            "blocksize 100" => QLoraOptions.Default with { Quantization = QuantizationOptions.Default with { BlockSize = 100 } },
            "pissa" => QLoraOptions.Default with { Lora = QLoraOptions.Default.Lora with { Init = LoraInit.Pissa } },
            _ => QLoraOptions.Default with { Quantization = QuantizationOptions.Default with { ComputeDType = ScalarType.Int8 } },
        };
        var error = Assert.Throws<InvalidOptionException>(() => new QLoraStrategy(options));
        Assert.Equal(option, error.Option);
        Assert.StartsWith(option + ": ", error.Message);
    }

    [Fact]
    public void Defaults_and_the_paper_preset_have_the_documented_values()
    {
        var defaults = QLoraOptions.Default;
        Assert.Equal((16, 32.0, 0.0, true), (defaults.Lora.R, defaults.Lora.Alpha, defaults.Lora.Dropout, defaults.Lora.TargetModules!.IsAllLinear));
        Assert.Equal((QuantizationType.NF4, true, 64, ScalarType.BFloat16), (defaults.Quantization.Type, defaults.Quantization.DoubleQuant, defaults.Quantization.BlockSize, defaults.Quantization.ComputeDType));
        Assert.Equal(ScalarType.Float32, defaults.Lora.AdapterDType);
        Assert.False(defaults.KeepFullPrecisionBase);

        var paper = QLoraOptions.PaperPreset;
        Assert.Equal((64, 16.0, 0.05, true), (paper.Lora.R, paper.Lora.Alpha, paper.Lora.Dropout, paper.Lora.TargetModules!.IsAllLinear));
        Assert.Equal(QuantizationOptions.Default, paper.Quantization);

        var training = QLoraPreset.PaperTraining(TrainingOptions.Default with { BatchSize = 1, GradientAccumulationSteps = 16 });
        Assert.Equal((OptimizerKind.PagedAdamW, 2e-4, 0.999, 0.0), (training.Optimizer.Kind, training.Optimizer.LearningRate, training.Optimizer.Beta2, training.Optimizer.WeightDecay));
        Assert.Equal((ScheduleKind.Constant, (int?)null, 0.03), (training.Schedule.Kind, training.Schedule.WarmupSteps, training.Schedule.WarmupRatio));
        Assert.Equal(0.3, training.MaxGradNorm);
        Assert.Equal((1, 16), (training.BatchSize, training.GradientAccumulationSteps));
        training.Validate();
    }

    [Fact]
    public void Full_sft_refuses_a_4_bit_model_and_names_the_problem()
    {
        using var model = TinyModels.Create();
        ModelQuantizer.Quantize(model);
        var error = Assert.Throws<InvalidOptionException>(() => new FullSftStrategy().Apply(model, StrategyContext.Empty));
        Assert.Equal("method", error.Option);
        Assert.Contains("4-bit", error.Message, StringComparison.Ordinal);
        Assert.Contains("Linear4Bit", error.Message, StringComparison.Ordinal);
        Assert.All(model.named_parameters(), p => Assert.DoesNotContain("lora_", p.name));
    }

    [Fact]
    public void A_QLoRA_adapter_loads_as_QLoRA_on_a_4_bit_base_and_as_LoRA_on_the_16_bit_base()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        var strategy = Adapted(model);
        strategy.Save(temp.Path);
        Assert.Equal("LORA", AdapterLoader.ReadPeftType(temp.Path));
        using var expected = Logits(model);

        // The same 4-bit base (quantization is deterministic): the loader returns QLoRA and reproduces the outputs.
        using var quantized = TinyModels.Create();
        ModelQuantizer.Quantize(quantized, Options().Quantization);
        var loaded = Assert.IsType<QLoraStrategy>(AdapterLoader.Load(temp.Path, quantized));
        Assert.True(loaded.Lora.InferenceMode);
        using (var actual = Logits(quantized))
        {
            Assert.True(BitEqual(expected, actual));
        }

        // A 16-bit base holding the dequantized weights gives the same outputs through plain LoRA.
        using var dequantized = Dequantized(model, ScalarType.Float32);
        Assert.IsType<LoraStrategy>(AdapterLoader.Load(temp.Path, dequantized));
        using (var actual = Logits(dequantized))
        {
            Assert.True(MaxDiff(expected, actual) < 1e-4, $"differs by {MaxDiff(expected, actual)}");
        }

        // The original 16-bit base differs by the quantization error the adapter trained against (large on this
        // 32-wide random model: about a quarter of the largest logit).
        using var full = TinyModels.Create();
        Assert.IsType<LoraStrategy>(AdapterLoader.Load(temp.Path, full));
        using (var actual = Logits(full))
        {
            Assert.InRange(RelativeDiff(actual, expected), 1e-3, 0.5);
        }
    }
}
