using FineTuning.Core.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

public class Blockwise8BitTests
{
    [Fact]
    public void Signed_map_has_bitsandbytes_shape_and_ends()
    {
        var map = DynamicQuantizationMap.Signed;
        Assert.Equal(256, map.Count);
        Assert.True(map.Zip(map.Skip(1)).All(p => p.First < p.Second), "strictly ascending");
        Assert.Equal(-0.992968738079071f, map[0]); // not -1: the largest negative decade stops short
        Assert.Equal(0f, map[127]);
        Assert.Equal(1f, map[255]);
        Assert.Equal(5.5e-7f, map[128], 1e-12f); // 1e-6 · (0.1 + 1) / 2
        Assert.Equal(127, map.Count(v => v < 0));
    }

    [Fact]
    public void Unsigned_map_starts_at_zero_and_has_twice_the_fractions()
    {
        var map = DynamicQuantizationMap.Unsigned;
        Assert.Equal(256, map.Count);
        Assert.Equal(0f, map[0]);
        Assert.Equal(3.25e-7f, map[1], 1e-13f); // 1e-6 · midpoint of linspace(0.1, 1, 3)[0..1] = 1e-6 · 0.325
        Assert.Equal(1f, map[255]);
        Assert.DoesNotContain(map, v => v < 0);
    }

    [Fact]
    public void Midpoints_go_to_the_lower_code_and_exact_values_to_their_own()
    {
        var map = DynamicQuantizationMap.Signed;
        var inputs = new List<float> { 1f };
        for (var i = 100; i < 110; i++)
        {
            inputs.Add(map[i]);
            inputs.Add((map[i] + map[i + 1]) / 2f);
        }

        using var quantized = Blockwise8BitQuantizer.Quantize(tensor(inputs.ToArray()), map, 256);
        var codes = quantized.Codes.data<byte>().ToArray();
        Assert.Equal(255, codes[0]);
        for (var k = 0; k < 10; k++)
        {
            Assert.Equal(100 + k, codes[1 + 2 * k]);
            Assert.Equal(100 + k, codes[2 + 2 * k]);
        }
    }

    // bitsandbytes' test_dynamic_blockwise_quantization bounds (blocksize 256, fp32): randn mean abs error < 0.011,
    // relative < 0.018; uniform [0, 1) with the signed map < 0.0036 / 0.015, unsigned map < 0.0023 / 0.012.
    [Theory]
    [InlineData(true, false, 0.011, 0.018)]
    [InlineData(false, true, 0.0036, 0.015)]
    [InlineData(false, false, 0.0023, 0.012)]
    public void Round_trip_error_is_within_bitsandbytes_bounds(bool normal, bool signedMap, double maxError, double maxRelative)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(0);
        var input = normal ? randn([1024, 1024], generator: generator) : rand([1024, 1024], generator: generator);
        var map = signedMap || normal ? DynamicQuantizationMap.Signed : DynamicQuantizationMap.Unsigned;
        using var quantized = Blockwise8BitQuantizer.Quantize(input, map, 256);
        Assert.Equal(4096, quantized.Absmax.shape[0]);
        var restored = Blockwise8BitQuantizer.Dequantize(quantized, map);
        var error = (input - restored).abs();
        Assert.True(error.mean().item<float>() < maxError, $"mean abs error {error.mean().item<float>()}");
        Assert.True((error / (input.abs() + 1e-8)).mean().item<float>() < maxRelative);
    }

    [Fact]
    public void A_partial_last_block_uses_its_own_absmax()
    {
        var input = tensor(new float[] { 4, -2, 1, 0.5f, 3 });
        using var quantized = Blockwise8BitQuantizer.Quantize(input, DynamicQuantizationMap.Signed, 4);
        Assert.Equal(new float[] { 4, 3 }, quantized.Absmax.data<float>().ToArray());
        var restored = Blockwise8BitQuantizer.Dequantize(quantized, DynamicQuantizationMap.Signed).data<float>().ToArray();
        Assert.Equal(4f, restored[0]);
        Assert.Equal(3f, restored[4]);
        Assert.Equal(-2f, restored[1], 0.02f);
    }
}
