using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Strategies.Lora;
using FineTuning.Core.Training;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

public class ModelQuantizerTests
{
    [Fact]
    public void Every_projection_but_lm_head_becomes_4_bit_and_the_parameter_total_is_unchanged()
    {
        using var model = TinyModels.Create();
        var before = model.CountParameters();
        var quantized = ModelQuantizer.Quantize(model);

        Assert.Equal(2 * 7, quantized.Count);
        var slots = model.LinearSlots();
        Assert.All(slots.Where(s => s.FullName != "lm_head"), s => Assert.IsType<Linear4Bit>(s.Module));
        Assert.IsType<Linear>(model.LmHead);
        Assert.DoesNotContain(model.named_parameters(), p => p.parameter.dtype == ScalarType.Byte);

        var after = model.CountParameters();
        Assert.Equal(before.Total, after.Total);
        var quantizedCount = slots.Where(s => s.Module is Linear4Bit).Sum(s => ((Linear4Bit)s.Module).InFeatures * ((Linear4Bit)s.Module).OutFeatures);
        Assert.Equal(before.Trainable - quantizedCount, after.Trainable);
    }

    [Fact]
    public void The_quantized_model_computes_with_the_dequantized_weights()
    {
        using var model = TinyModels.Create();
        using var reference = TinyModels.Create();
        ModelQuantizer.Quantize(model, new QuantizationOptions { ComputeDType = ScalarType.Float32 });
        using (no_grad())
        {
            foreach (var slot in model.LinearSlots().Where(s => s.Module is Linear4Bit))
            {
                using var weight = ((Linear4Bit)slot.Module).Dequantize();
                ((Linear)reference.LinearSlots().Single(s => s.FullName == slot.FullName).Module).weight!.copy_(weight);
            }
        }

        using var logits = LoraTestKit.Logits(model);
        using var expected = LoraTestKit.Logits(reference);
        Assert.True(logits.allclose(expected, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void Skip_modules_and_tied_heads_stay_in_full_precision()
    {
        using var model = TinyModels.Create(TinyModels.Config(tied: true));
        var quantized = ModelQuantizer.Quantize(model, new QuantizationOptions { SkipModules = ["down_proj", "layers.1.self_attn"] });
        Assert.Equal(2 * 3 + 2, quantized.Count);
        Assert.All(model.LinearSlots().Where(s => s.FullName.EndsWith("down_proj", StringComparison.Ordinal) || s.FullName.Contains("layers.1.self_attn", StringComparison.Ordinal)), s => Assert.IsType<Linear>(s.Module));
        Assert.IsType<TiedLinear>(model.LmHead);
        Assert.Empty(ModelQuantizer.Quantize(model, new QuantizationOptions { SkipModules = ["down_proj", "layers.1.self_attn"] }));
    }

    [Theory]
    [InlineData(nameof(QuantizationOptions.BlockSize))]
    [InlineData(nameof(QuantizationOptions.ComputeDType))]
    [InlineData(nameof(QuantizationOptions.SkipModules))]
    public void Invalid_options_name_the_option(string option)
    {
        var options = option switch
        {
            nameof(QuantizationOptions.BlockSize) => new QuantizationOptions { BlockSize = 100 },
            nameof(QuantizationOptions.ComputeDType) => new QuantizationOptions { ComputeDType = ScalarType.Int8 },
            _ => new QuantizationOptions { SkipModules = [""] },
        };
        using var model = TinyModels.Create();
        var error = Assert.Throws<InvalidOptionException>(() => ModelQuantizer.Quantize(model, options));
        Assert.Equal($"{nameof(QuantizationOptions)}.{option}", error.Option);
    }

    [Fact]
    public void Quantizing_after_adding_adapters_is_refused()
    {
        using var model = TinyModels.Create();
        var strategy = LoraTestKit.Apply(model);
        var error = Assert.Throws<InvalidOperationException>(() => ModelQuantizer.Quantize(model));
        Assert.Contains("before adding adapters", error.Message);
    }

    [Fact]
    public void Lora_on_a_4_bit_model_starts_at_its_output_and_counts_like_peft()
    {
        using var model = TinyModels.Create();
        var total = model.CountParameters().Total;
        ModelQuantizer.Quantize(model);
        using var quantizedLogits = LoraTestKit.Logits(model);
        var strategy = LoraTestKit.Apply(model, new LoraOptions { R = 4, Alpha = 8, TargetModules = LoraTargetModules.AllLinear });
        Assert.All(strategy.LoraLayers.Values, layer => Assert.IsType<Linear4Bit>(layer.BaseLayer));
        using var logits = LoraTestKit.Logits(model);
        Assert.True(LoraTestKit.BitEqual(quantizedLogits, logits));

        var loraCount = strategy.LoraLayers.Values.Sum(l => 4 * (l.InFeatures + l.OutFeatures));
        var counts = model.CountParameters();
        Assert.Equal(loraCount, counts.Trainable);
        Assert.Equal(total + loraCount, counts.Total);
    }

    [Fact]
    public void Pissa_on_a_4_bit_model_is_an_invalid_option()
    {
        using var model = TinyModels.Create();
        ModelQuantizer.Quantize(model);
        var error = Assert.Throws<InvalidOptionException>(() => LoraTestKit.Apply(model, new LoraOptions { Init = LoraInit.Pissa }));
        Assert.Equal($"{nameof(LoraOptions)}.{nameof(LoraOptions.Init)}", error.Option);
    }

    [Fact]
    public void Lora_gradients_on_a_4_bit_model_are_the_same_with_activation_checkpointing()
    {
        var grads = new List<Dictionary<string, Tensor>>();
        foreach (var checkpointing in new[] { false, true })
        {
            using var model = TinyModels.Create();
            ModelQuantizer.Quantize(model, new QuantizationOptions { ComputeDType = ScalarType.Float32 });
            var strategy = LoraTestKit.Apply(model, new LoraOptions { R = 4, Alpha = 8 });
            LoraTestKit.Randomize(strategy);
            model.train();
            model.LayerRunner = checkpointing ? ActivationCheckpointing.Runner : null;
            using (var scope = NewDisposeScope())
            {
                using var ids = LoraTestKit.Ids();
                model.call(ModelInput.FromIds(ids)).Logits.pow(2).mean().backward();
            }

            grads.Add(model.named_parameters().Where(p => p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.grad!.clone()));
        }

        Assert.NotEmpty(grads[0]);
        Assert.Equal(grads[0].Keys, grads[1].Keys);
        foreach (var (name, grad) in grads[0])
        {
            Assert.True(grad.abs().sum().item<float>() > 0, name);
            Assert.True(grad.allclose(grads[1][name], rtol: 1e-5, atol: 1e-7), name);
        }
    }

    [Fact]
    public void An_adapter_saved_from_a_4_bit_model_loads_onto_another()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create();
        ModelQuantizer.Quantize(model);
        var strategy = LoraTestKit.Apply(model, new LoraOptions { R = 4, Alpha = 8 });
        LoraTestKit.Randomize(strategy);
        strategy.Save(temp.Path);
        using var expected = LoraTestKit.Logits(model);

        using var other = TinyModels.Create();
        ModelQuantizer.Quantize(other);
        LoraStrategy.FromPretrained(temp.Path, other);
        using var actual = LoraTestKit.Logits(other);
        Assert.True(LoraTestKit.BitEqual(expected, actual));
    }
}
