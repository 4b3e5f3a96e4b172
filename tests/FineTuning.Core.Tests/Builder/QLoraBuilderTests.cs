using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Tests.Samples;
using FineTuning.Core.Tests.Training;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Builder;

public sealed class QLoraBuilderTests : IDisposable
{
    // Tiny preset per layer: q, o 64→64, k, v 64→32, gate, up 64→176, down 176→64; r·(in + out) summed.
    private const long LoraPerRankPerLayer = (2 * (64 + 64)) + (2 * (64 + 32)) + (3 * (64 + 176));

    private readonly TempDirectory temp = new();

    public void Dispose() => temp.Dispose();

    private static FineTunerBuilder Tiny(CausalLanguageModel model) => FineTuner.Create().WithModel(model).WithTokenizer(TrainingData.Gpt2);

    [Fact]
    public void WithQLoRA_defaults_to_r_16_alpha_32_on_every_projection_of_an_NF4_base()
    {
        using var model = TinyModels.Preset();
        using var tuner = Tiny(model).WithQLoRA().Build();
        var qlora = Assert.IsType<QLoraStrategy>(tuner.Strategy);
        Assert.Equal("qlora", qlora.Method);
        Assert.Equal((16, 32.0, 0.0), (qlora.Options.Lora.R, qlora.Options.Lora.Alpha, qlora.Options.Lora.Dropout));
        Assert.Equal(QuantizationOptions.Default, qlora.Options.Quantization);
        Assert.Equal(14, qlora.QuantizedModules.Count);
        Assert.Equal(14, qlora.Lora.LoraLayers.Count);
        Assert.All(qlora.Lora.LoraLayers.Values, l => Assert.Equal(QuantizationType.NF4, Assert.IsType<Linear4Bit>(l.BaseLayer).Type));
        Assert.Equal(2 * 16 * LoraPerRankPerLayer, tuner.Parameters.Trainable);
        qlora.Remove();
    }

    [Fact]
    public void WithQLoRA_arguments_reach_the_options()
    {
        using var model = TinyModels.Preset();
        using var tuner = Tiny(model).WithQLoRA(r: 4, alpha: 4, targets: ["q_proj", "v_proj"], dropout: 0.1, type: QuantizationType.FP4, doubleQuant: false,
            configure: o => o with { Quantization = o.Quantization with { BlockSize = 128 } }).Build();
        var qlora = Assert.IsType<QLoraStrategy>(tuner.Strategy);
        Assert.Equal((4, 4.0, 0.1), (qlora.Options.Lora.R, qlora.Options.Lora.Alpha, qlora.Options.Lora.Dropout));
        Assert.Equal(4, qlora.Lora.LoraLayers.Count);

        // Every projection is quantized, adapters or not.
        var layers = model.named_modules().Select(m => m.module).OfType<Linear4Bit>().ToList();
        Assert.Equal(14, layers.Count);
        Assert.All(layers, l => Assert.Equal((QuantizationType.FP4, false, 128), (l.Type, l.IsDoubleQuantized, l.BlockSize)));
        qlora.Remove();
    }

    [Theory]
    [InlineData("rank 0", "QLoraOptions.Lora.R")]
    [InlineData("blocksize 100", "QLoraOptions.Quantization.BlockSize")]
    [InlineData("no such target", "QLoraOptions.Lora.TargetModules")]
    [InlineData("two methods", "WithQLoRA")]
    public void Build_rejects_invalid_QLoRA_options_naming_them_and_leaves_the_model_unquantized(string mistake, string option)
    {
        using var model = TinyModels.Preset();
        var builder = mistake switch
        {
            "rank 0" => Tiny(model).WithQLoRA(r: 0),
            "blocksize 100" => Tiny(model).WithQLoRA(configure: o => o with { Quantization = o.Quantization with { BlockSize = 100 } }),
            "no such target" => Tiny(model).WithQLoRA(targets: ["query"]),
            _ => Tiny(model).WithLoRA().WithQLoRA(),
        };
        var error = Assert.Throws<InvalidOptionException>(builder.Build);
        Assert.Equal(option, error.Option);
        Assert.DoesNotContain(model.named_modules(), m => m.module is Linear4Bit or LoraLinear);
    }

    [Fact]
    public void The_paper_preset_sets_the_adapter_and_the_optimizer_schedule_and_clipping()
    {
        using var model = TinyModels.Preset();
        using var tuner = Tiny(model).WithQLoRAPaperPreset().WithTraining(t => t with { BatchSize = 1, GradientAccumulationSteps = 16 }).Build();
        var qlora = Assert.IsType<QLoraStrategy>(tuner.Strategy);
        Assert.Same(QLoraOptions.PaperPreset, qlora.Options);
        Assert.Equal((OptimizerKind.PagedAdamW, 2e-4), (tuner.Options.Optimizer.Kind, tuner.Options.Optimizer.LearningRate));
        Assert.Equal((ScheduleKind.Constant, 0.03), (tuner.Options.Schedule.Kind, tuner.Options.Schedule.WarmupRatio));
        Assert.Equal(0.3, tuner.Options.MaxGradNorm);
        Assert.Equal(16, tuner.Options.GradientAccumulationSteps);
        Assert.Equal(2 * 64 * LoraPerRankPerLayer, tuner.Parameters.Trainable);
        qlora.Remove();
    }

    [Fact]
    public void Train_from_a_folder_writes_a_PEFT_adapter_and_SaveMerged_a_16_bit_folder()
    {
        var model = TinyModels.WritePreset(temp.File("model"));
        var adapter = temp.File("adapter");
        var merged = temp.File("merged");
        using var tuner = FineTuner.Create().WithModel(model).WithQLoRA(r: 16).WithOutput(adapter)
            .WithOptimizer(o => o with { LearningRate = 1e-2, Kind = OptimizerKind.PagedAdamW })
            .WithTraining(t => t with { MaxSteps = 3, BatchSize = 8 })
            .Train(WordMap.TrainPath)
            .Tuner;
        Assert.Equal(14, tuner.Model.named_modules().Count(m => m.module is Linear4Bit));

        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, LoraAdapterConfig.FileName))))
        {
            Assert.Equal("LORA", config.RootElement.GetProperty("peft_type").GetString());
            Assert.Equal(16, config.RootElement.GetProperty("r").GetInt32());
            Assert.Equal(32, config.RootElement.GetProperty("lora_alpha").GetDouble());
            Assert.Equal(["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"], config.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!));
        }

        Assert.True(File.Exists(Path.Combine(adapter, PeftAdapterFiles.WeightsFileName)));
        using var adapted = Logits(tuner.Model);
        tuner.SaveMerged(merged);
        Assert.False(QuantizedModelFiles.IsQuantizedFolder(merged));
        using var reloaded = HuggingFaceModel.Load(merged);
        Assert.DoesNotContain(reloaded.named_modules(), m => m.module is Linear4Bit);
        using var reloadedLogits = Logits(reloaded);

        // bf16 compute before the merge, fp32 after: equal up to the bf16 rounding of activations.
        var scale = adapted.abs().max().item<float>();
        Assert.True(MaxDiff(adapted, reloadedLogits) < 2e-2 * scale, $"merged differs by {MaxDiff(adapted, reloadedLogits)} (max logit {scale})");
    }

    [Fact]
    public void A_4_bit_folder_trains_with_QLoRA_as_it_is_and_refuses_full_sft()
    {
        using var source = TinyModels.Preset();
        ModelQuantizer.Quantize(source, new QuantizationOptions { Type = QuantizationType.FP4 });
        var folder = temp.File("q4");
        HuggingFaceModel.Save(source, folder);
        TokenizerFiles.WriteGpt2(folder);

        var error = Assert.Throws<InvalidOptionException>(FineTuner.Create().WithModel(folder).Build);
        Assert.Equal("method", error.Option);

        using var tuner = FineTuner.Create().WithModel(folder).WithQLoRA(r: 2).Build();
        var qlora = Assert.IsType<QLoraStrategy>(tuner.Strategy);
        Assert.Empty(qlora.QuantizedModules);
        Assert.All(qlora.Lora.LoraLayers.Values, l => Assert.Equal(QuantizationType.FP4, ((Linear4Bit)l.BaseLayer).Type));
    }
}
