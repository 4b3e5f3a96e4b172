using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

public class Linear4BitTests(ITestOutputHelper output)
{
    private static readonly QuantizationOptions Fp32Compute = new() { ComputeDType = ScalarType.Float32 };

    [Fact]
    public void Forward_equals_a_linear_with_the_dequantized_weight()
    {
        using var linear = RandomLinear(48, 40, bias: true);
        using var layer = Linear4Bit.FromLinear(linear, Fp32Compute);
        using var scope = NewDisposeScope();
        var x = randn([3, 5, 40], generator: new Generator(3));
        var expected = nn.functional.linear(x, layer.Dequantize(), layer.Bias);
        Assert.True(layer.call(x).eq(expected).all().item<bool>());
        Assert.Equal(new long[] { 48, 40 }, layer.Dequantize().shape);
    }

    [Fact]
    public void Forward_computes_in_the_compute_dtype_and_returns_the_input_dtype()
    {
        using var linear = RandomLinear(32, 64, bias: true);
        using var layer = Linear4Bit.FromLinear(linear);
        Assert.Equal(ScalarType.BFloat16, layer.ComputeDType);
        using var scope = NewDisposeScope();
        var x = randn([4, 64], generator: new Generator(4));
        var y = layer.call(x);
        Assert.Equal(ScalarType.Float32, y.dtype);
        var expected = (nn.functional.linear(x.to(ScalarType.BFloat16), layer.Dequantize(ScalarType.BFloat16)) + layer.Bias!.to(ScalarType.BFloat16)).to(ScalarType.Float32);
        Assert.True(y.eq(expected).all().item<bool>());
    }

    [Fact]
    public void Backward_gives_the_input_its_gradient_and_the_4_bit_weight_none()
    {
        using var linear = RandomLinear(24, 40, bias: true);
        using var layer = Linear4Bit.FromLinear(linear, Fp32Compute);
        layer.Bias!.requires_grad = true;
        Assert.DoesNotContain(layer.parameters(), p => p.dtype == ScalarType.Byte);
        Assert.Equal(ScalarType.Byte, layer.named_buffers().Single(b => b.name == "weight").buffer.dtype);

        using var scope = NewDisposeScope();
        var x = randn([6, 40], generator: new Generator(5)).requires_grad_(true);
        var upstream = randn([6, 24], generator: new Generator(6));
        (layer.call(x) * upstream).sum().backward();

        var reference = x.detach().clone().requires_grad_(true);
        var weight = layer.Dequantize();
        (nn.functional.linear(reference, weight) * upstream).sum().backward();
        Assert.True(x.grad!.allclose(reference.grad!, rtol: 1e-5, atol: 1e-6));
        Assert.True(x.grad!.allclose(upstream.matmul(weight), rtol: 1e-5, atol: 1e-6));
        Assert.True(layer.Bias.grad!.allclose(upstream.sum([0])));
        Assert.False(layer.PackedWeight.requires_grad);
    }

    [Fact]
    public void The_graph_keeps_no_full_precision_weight_between_forward_and_backward()
    {
        // A 4096×4096 fp32 weight is 64 MiB, above glibc's largest mmap threshold, so holding it shows in the RSS.
        using var linear = RandomLinear(4096, 4096, bias: false);
        using var layer = Linear4Bit.FromLinear(linear, Fp32Compute);
        using var scope = NewDisposeScope();
        var x = randn([2, 4096], generator: new Generator(7)).requires_grad_(true);

        var ours = RetainedBytes(() => layer.call(x));
        var naive = RetainedBytes(() => nn.functional.linear(x, layer.Dequantize()));
        output.WriteLine($"retained after forward: Linear4Bit {ours / 1048576.0:F1} MiB, linear(x, dequantized W) {naive / 1048576.0:F1} MiB");
        Assert.True(naive > 48L << 20, "the measurement sees a retained 64 MiB weight");
        Assert.True(ours < 16L << 20, $"Linear4Bit retained {ours} bytes");
    }

    [Fact]
    public void Storage_is_4_5_bits_per_weight_without_and_about_4_127_with_double_quantization()
    {
        using var linear = nn.Linear(4096, 4096, hasBias: false);
        const long n = 4096L * 4096;
        using var plain = Linear4Bit.FromLinear(linear, new QuantizationOptions { DoubleQuant = false });
        using var nested = Linear4Bit.FromLinear(linear, QuantizationOptions.Default);

        // Packed codes n/2 bytes, one float32 absmax per 64, the 16-float table.
        Assert.Equal(n / 2 + n / 64 * 4 + 16 * 4, plain.StorageBytes);
        Assert.InRange(plain.BitsPerParameter, 4 + 32.0 / 64, 4 + 32.0 / 64 + 1e-4);

        // One uint8 code per 64, one float32 absmax per 64·256, the offset, the 16- and 256-float tables.
        Assert.Equal(n / 2 + n / 64 + n / (64 * 256) * 4 + 4 + 16 * 4 + 256 * 4, nested.StorageBytes);
        Assert.InRange(nested.BitsPerParameter, 4 + 8.0 / 64 + 32.0 / (64 * 256), 4 + 8.0 / 64 + 32.0 / (64 * 256) + 1e-3);
        output.WriteLine($"bits/param: {plain.BitsPerParameter:F6} without, {nested.BitsPerParameter:F6} with double quantization");
    }

    [Fact]
    public void Lora_over_a_4_bit_base_starts_at_the_base_output_and_trains_A_and_B()
    {
        using var linear = RandomLinear(32, 48, bias: true);
        var layer = Linear4Bit.FromLinear(linear, Fp32Compute);
        layer.Bias!.requires_grad = false; // frozen, as a LoRA strategy leaves the base
        using var lora = new LoraLinear(layer);
        Assert.Equal(48, lora.InFeatures);
        Assert.Equal(32, lora.OutFeatures);
        lora.AddAdapter("default", new LoraLayerConfig(4, 8), new Generator(8));
        lora.SetActiveAdapters(["default"]);
        lora.train();

        using var scope = NewDisposeScope();
        var x = randn([5, 48], generator: new Generator(9));
        Assert.True(lora.call(x).eq(layer.call(x)).all().item<bool>());

        // One step on B makes A's gradient non-zero too.
        using (no_grad())
        {
            lora.LoraB("default").weight!.normal_(0, 0.1, new Generator(10));
        }

        lora.call(x).pow(2).sum().backward();
        Assert.True(lora.LoraA("default").weight!.grad!.abs().sum().item<float>() > 0);
        Assert.True(lora.LoraB("default").weight!.grad!.abs().sum().item<float>() > 0);
        Assert.DoesNotContain(layer.parameters(), p => p.grad is not null);
    }

    [Fact]
    public void Merging_into_a_4_bit_base_requantizes_the_sum()
    {
        using var linear = RandomLinear(32, 64, bias: false);
        var layer = Linear4Bit.FromLinear(linear, Fp32Compute);
        using var lora = new LoraLinear(layer);
        lora.AddAdapter("default", new LoraLayerConfig(4, 8) { Init = LoraInit.Random }, new Generator(11));
        lora.SetActiveAdapters(["default"]);

        using var scope = NewDisposeScope();
        var expected = layer.Dequantize() + lora.DeltaWeight("default");
        lora.Merge();
        Assert.True(lora.IsMerged);
        using var requantized = Blockwise4BitQuantizer.Quantize(expected, QuantizationType.NF4, 64, doubleQuant: true);
        Assert.True(layer.PackedWeight.eq(requantized.Packed).all().item<bool>());
        Assert.True(layer.Dequantize().eq(Blockwise4BitQuantizer.Dequantize(requantized)).all().item<bool>());
    }

    [Fact]
    public void Pissa_is_refused_on_a_4_bit_base()
    {
        using var linear = RandomLinear(16, 16, bias: false);
        using var lora = new LoraLinear(Linear4Bit.FromLinear(linear));
        var error = Assert.Throws<ArgumentException>(() => lora.AddAdapter("default", new LoraLayerConfig(2, 4) { Init = LoraInit.Pissa }));
        Assert.Contains("quantized", error.Message);
    }

    [Fact]
    public void Moving_to_a_dtype_casts_the_bias_but_not_the_codes_or_scales()
    {
        using var linear = RandomLinear(16, 64, bias: true);
        using var layer = Linear4Bit.FromLinear(linear, new QuantizationOptions { DoubleQuant = false });
        using var before = layer.Dequantize(ScalarType.Float32);
        layer.to(ScalarType.BFloat16);
        Assert.Equal(ScalarType.BFloat16, layer.Bias!.dtype);
        Assert.Equal(ScalarType.Byte, layer.PackedWeight.dtype);
        Assert.Equal(ScalarType.Float32, layer.QuantState.Absmax.dtype);
        using var after = layer.Dequantize(ScalarType.Float32);
        Assert.True(after.eq(before).all().item<bool>());
    }

    private static Linear RandomLinear(int outFeatures, int inFeatures, bool bias)
    {
        var linear = nn.Linear(inFeatures, outFeatures, hasBias: bias);
        using (no_grad())
        {
            var generator = new Generator(42);
            linear.weight!.normal_(0, 0.05, generator);
            linear.bias?.normal_(0, 0.05, generator);
        }

        return linear;
    }

    /// <summary>RSS growth while the result of <paramref name="forward"/> (and its graph) is alive.</summary>
    private static long RetainedBytes(Func<Tensor> forward)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var before = Rss();
        using var result = forward();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        return Rss() - before;
    }

    private static long Rss()
    {
        var fields = File.ReadAllText("/proc/self/statm").Split(' ');
        return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize;
    }
}
