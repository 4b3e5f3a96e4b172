using System.Globalization;
using FineTuning.Core.Quantization;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Quantization;

public class FourBitQuantizerTests(ITestOutputHelper output)
{
    // qlora.md §1.1: the float32 bit patterns of bitsandbytes' NF4 table.
    private static readonly uint[] Nf4Bits =
    [
        0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
        0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
    ];

    // qlora.md §2.2: the NF4 float32 midpoints (= CUDA decision-tree pivots after float rounding).
    private static readonly float[] Nf4Midpoints =
    [
        -0.8480963706970215f, -0.6106328964233398f, -0.4599952697753906f, -0.33967941999435425f,
        -0.23460739850997925f, -0.13791173696517944f, -0.045525018125772476f, 0.03979014977812767f,
        0.120255246758461f, 0.2035212516784668f, 0.2920137643814087f, 0.3893125355243683f,
        0.5016634464263916f, 0.6427869200706482f, 0.8614784479141235f,
    ];

    [Fact]
    public void Nf4_table_matches_bitsandbytes_bit_for_bit()
    {
        var table = FourBitCodeTable.NF4;
        Assert.Equal(Nf4Bits, table.Select(BitConverter.SingleToUInt32Bits).ToArray());
        Assert.Equal(Nf4Midpoints, FourBitCodeTable.Nf4Midpoints);
    }

    [Fact]
    public void Fp4_table_is_the_raw_values_over_12_in_bit_pattern_order()
    {
        float[] raw = [0, 0.0625f, 8, 12, 4, 6, 2, 3];
        var table = FourBitCodeTable.FP4;
        for (var c = 0; c < 8; c++)
        {
            Assert.Equal(raw[c] / 12f, table[c]);
            Assert.Equal(-raw[c] / 12f, table[c + 8]);
        }

        // Values qlora.md §1.2 prints: 1/192, 2/3, 1. Code 8 is +0.0 in bitsandbytes' quant_map: get_4bit_type
        // writes it as the Python integer -0, which is 0.
        Assert.Equal(0.0052083335f, table[1]);
        Assert.Equal(0.6666667f, table[2]);
        Assert.Equal(0u, BitConverter.SingleToUInt32Bits(table[8]));
        Assert.Equal(-1f, table[11]);
    }

    [Fact]
    public void Int4_table_is_bitsandbytes_get_4bit_type_int4()
    {
        var table = FourBitCodeTable.Int4;
        Assert.Equal(new[] { 1f, 6 / 7f, 5 / 7f, 4 / 7f, 3 / 7f, 2 / 7f, 1 / 7f, 0f }, table.Take(8));
        Assert.Equal(new[] { 0f, -1 / 7f, -2 / 7f, -3 / 7f, -4 / 7f, -5 / 7f, -6 / 7f, -1f }, table.Skip(8));
    }

    [Fact]
    public void Nf4_ties_go_to_the_lower_code()
    {
        // qlora.md §2.2: [1, m0 … m14, −1, 0] with absmax 1 → [15, 0 … 14, 0, 7].
        var input = new List<float> { 1f };
        input.AddRange(Nf4Midpoints);
        input.AddRange([-1f, 0f]);
        using var quantized = Blockwise4BitQuantizer.Quantize(tensor(input.ToArray()), QuantizationType.NF4, 64);
        var expected = new List<byte> { 15 };
        expected.AddRange(Enumerable.Range(0, 15).Select(i => (byte)i));
        expected.AddRange([0, 7]);
        Assert.Equal(expected, Unpack(quantized.Packed, input.Count));
    }

    [Fact]
    public void Fp4_sign_comes_from_x_below_zero_and_ties_go_toward_zero()
    {
        // Pivots exactly: the smaller magnitude; just above: the larger. −0.0 keeps the positive sign (x < 0 is false).
        float[] input = [1f, 0.8333333f, 0.8333334f, -0.0859375f, -0.08593751f, 0.00260417f, -0f, -0.001f];
        using var quantized = Blockwise4BitQuantizer.Quantize(tensor(input), QuantizationType.FP4, 64);
        Assert.Equal(new byte[] { 0b0011, 0b0010, 0b0011, 0b1001, 0b1110, 0b0000, 0b0000, 0b1000 }, Unpack(quantized.Packed, input.Length));
    }

    [Fact]
    public void The_first_element_of_each_pair_goes_in_the_high_nibble_and_odd_lengths_pad_with_the_zero_code()
    {
        // NF4: 1 → 15, −1 → 0, 0 → 7; an odd count pads the last low nibble with the code of 0.0 (7).
        using var nf4 = Blockwise4BitQuantizer.Quantize(tensor(new float[] { 1, -1, 0 }), QuantizationType.NF4, 64);
        Assert.Equal(new long[] { 2, 1 }, nf4.Packed.shape);
        Assert.Equal(ScalarType.Byte, nf4.Packed.dtype);
        Assert.Equal(new byte[] { 0xf0, 0x77 }, nf4.Packed.data<byte>().ToArray());

        // FP4: 1 → 0b0011, 0 → 0b0000 (and the pad).
        using var fp4 = Blockwise4BitQuantizer.Quantize(tensor(new float[] { 1, 0, 1 }), QuantizationType.FP4, 64);
        Assert.Equal(new byte[] { 0x30, 0x30 }, fp4.Packed.data<byte>().ToArray());
        Assert.Equal((byte)7, FourBitCodeTable.ZeroCode(QuantizationType.NF4));
        Assert.Equal((byte)0, FourBitCodeTable.ZeroCode(QuantizationType.FP4));
    }

    [Theory]
    [InlineData(QuantizationType.NF4, "04c16e29f3b05d17e29f3c05d18e2af4c16e18e3b05d17e29f3b05d18e2af4c16d18e3b04c17e29f3b05d17e2af4c06d18e2a04c16e29f3b05d17e29f3c05d18f2", 0.0816341)]
    [InlineData(QuantizationType.FP4, "bf5a92a63c4be5a02d63c4be2a12d73f5a92a63d4bf5a92d63c4be5a12d73c5be2a63d4bf5a92d63c4be5a12d73c5be2a12d7bf5a92a63c4be5a02d63c4be2a13a", 0.0999680)]
    public void Deterministic_vector_gives_bitsandbytes_bytes_and_error(QuantizationType type, string hex, double mae)
    {
        // qlora.md §8.3: x_i = ((i·37 mod 101) − 50) / 25, i = 0…129, blocksize 64 → absmax [2, 2, 1.6].
        var x = DeterministicVector();
        using var quantized = Blockwise4BitQuantizer.Quantize(x, type, 64);
        Assert.Equal(new float[] { 2f, 2f, 1.6f }, quantized.State.Absmax.data<float>().ToArray());
        Assert.Equal(hex, Convert.ToHexStringLower(quantized.Packed.data<byte>().ToArray()));
        using var restored = Blockwise4BitQuantizer.Dequantize(quantized);
        using var error = (x - restored).abs().mean();
        output.WriteLine($"{type} deterministic-vector MAE {error.item<float>():F7}");
        Assert.Equal(mae, error.item<float>(), 6);
    }

    [Fact]
    public void Nf4_codes_and_dequantized_values_of_the_deterministic_vector()
    {
        using var quantized = Blockwise4BitQuantizer.Quantize(DeterministicVector(), QuantizationType.NF4, 64);
        Assert.Equal(new byte[] { 0, 4, 12, 1, 6, 14, 2, 9, 15, 3, 11, 0 }, Unpack(quantized.Packed, 12));
        using var restored = Blockwise4BitQuantizer.Dequantize(quantized);
        Assert.Equal(
            new[] { -2.0f, -0.5688827633857727f, 0.8814196586608887f, -1.3923856019973755f, -0.1821000725030899f, 1.4459136724472046f, -1.0501461029052734f, 0.3218604028224945f },
            restored.narrow(0, 0, 8).data<float>().ToArray());
    }

    [Fact]
    public void Fp4_codes_of_the_deterministic_vector()
    {
        using var quantized = Blockwise4BitQuantizer.Quantize(DeterministicVector(), QuantizationType.FP4, 64);
        Assert.Equal(new byte[] { 11, 15, 5, 10, 9, 2, 10, 6, 3, 12, 4, 11 }, Unpack(quantized.Packed, 12));
    }

    // qlora.md §8.1: bitsandbytes' asserted bounds (mean + 7σ over 200 GPU samples) for randn(1024, 1024), and the
    // values bitsandbytes' reference code gives for torch.manual_seed(0) (libtorch's generator, so the same input here).
    [Theory]
    [InlineData(QuantizationType.NF4, 32, 0.068229, 0.191854, 0.067758, 0.190068)]
    [InlineData(QuantizationType.NF4, 64, 0.073316, 0.205719, 0.072797, 0.203755)]
    [InlineData(QuantizationType.NF4, 128, 0.077468, 0.217974, 0.076855, 0.215851)]
    [InlineData(QuantizationType.NF4, 256, 0.081051, 0.228891, 0.080492, 0.226929)]
    [InlineData(QuantizationType.NF4, 1024, 0.087919, 0.249570, 0.086905, 0.246770)]
    [InlineData(QuantizationType.NF4, 4096, 0.095067, 0.269466, 0.092782, 0.263607)]
    [InlineData(QuantizationType.FP4, 32, 0.089562, 0.244753, 0.088992, 0.242971)]
    [InlineData(QuantizationType.FP4, 64, 0.097320, 0.262778, 0.096549, 0.260574)]
    [InlineData(QuantizationType.FP4, 128, 0.103907, 0.278848, 0.103063, 0.276283)]
    [InlineData(QuantizationType.FP4, 256, 0.109958, 0.293310, 0.108765, 0.290304)]
    [InlineData(QuantizationType.FP4, 1024, 0.121573, 0.320299, 0.119584, 0.315921)]
    [InlineData(QuantizationType.FP4, 4096, 0.133820, 0.345842, 0.129692, 0.337729)]
    public void Randn_error_is_within_bitsandbytes_bounds(QuantizationType type, int blockSize, double maxError, double maxRelative, double reference, double referenceRelative)
    {
        using var scope = NewDisposeScope();
        var input = randn([1024, 1024], generator: new Generator(0));
        var (error, relative) = Errors(input, type, blockSize, doubleQuant: false);
        output.WriteLine($"{type} blocksize {blockSize}: MAE {error:F6}, relerr {relative:F6}");
        Assert.True(error < maxError, $"MAE {error} ≥ {maxError}");
        Assert.True(relative < maxRelative, $"relerr {relative} ≥ {maxRelative}");
        Assert.InRange(error, reference - 1e-6, reference + 1e-6);
        Assert.InRange(relative, referenceRelative - 1e-6, referenceRelative + 1e-6);
    }

    [Theory]
    [InlineData(QuantizationType.NF4)]
    [InlineData(QuantizationType.FP4)]
    public void Double_quantization_costs_almost_no_accuracy(QuantizationType type)
    {
        // qlora.md §3.3: NF4 0.072797 → 0.072874, FP4 0.096549 → 0.096623 (randn 1024², blocksize 64).
        using var scope = NewDisposeScope();
        var input = randn([1024, 1024], generator: new Generator(0));
        var (plain, _) = Errors(input, type, 64, doubleQuant: false);
        var (nested, nestedRelative) = Errors(input, type, 64, doubleQuant: true);
        output.WriteLine($"{type}: MAE {plain:F6} → {nested:F6} with double quantization (relerr {nestedRelative:F6})");
        Assert.InRange(nested - plain, 0, 2e-4);
        Assert.InRange(nested, (type == QuantizationType.NF4 ? 0.072874 : 0.096623) - 1e-6, (type == QuantizationType.NF4 ? 0.072874 : 0.096623) + 1e-6);
        Assert.True(nested < 0.11 && nestedRelative < 0.28, "bitsandbytes' test_4bit_compressed_stats bounds");
    }

    [Fact]
    public void Double_quantization_stores_8_bit_codes_an_offset_and_256_block_scales()
    {
        using var scope = NewDisposeScope();
        var input = randn([64, 1024], generator: new Generator(1));
        using var quantized = Blockwise4BitQuantizer.Quantize(input, QuantizationType.NF4, 64, doubleQuant: true);
        var state = quantized.State;
        Assert.True(state.IsNested);
        Assert.Equal(ScalarType.Byte, state.Absmax.dtype);
        Assert.Equal(1024, state.Absmax.shape[0]);
        Assert.Equal(4, state.Nested!.Absmax.shape[0]);
        Assert.Equal(256, state.Nested.BlockSize);
        Assert.Equal(DynamicQuantizationMap.Signed, state.Nested.Code.data<float>().ToArray());

        // absmax ≈ dyn[q]·absmax2[i/256] + offset, with offset = mean of the exact absmax.
        var exact = input.reshape(-1, 64).abs().amax([1]);
        Assert.Equal(exact.mean().item<float>(), state.Offset!.item<float>());
        var restored = Blockwise4BitQuantizer.DequantizeAbsmax(state);
        Assert.True((restored - exact).abs().max().item<float>() < 0.01f * exact.max().item<float>());
    }

    [Theory]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float16)]
    public void Half_precision_inputs_quantize_through_float32_and_dequantize_to_their_dtype(ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var input = randn([32, 96], generator: new Generator(2)).to(dtype);
        using var quantized = Blockwise4BitQuantizer.Quantize(input, QuantizationType.NF4, 64);
        using var fromFloat = Blockwise4BitQuantizer.Quantize(input.to(ScalarType.Float32), QuantizationType.NF4, 64);
        Assert.True(quantized.Packed.eq(fromFloat.Packed).all().item<bool>());
        Assert.Equal(dtype, quantized.State.DType);
        using var restored = Blockwise4BitQuantizer.Dequantize(quantized);
        Assert.Equal(dtype, restored.dtype);
        Assert.Equal(input.shape, restored.shape);

        // The value is computed in float32 and rounded once.
        using var inFloat = Blockwise4BitQuantizer.Dequantize(quantized, ScalarType.Float32);
        Assert.True(inFloat.to(dtype).eq(restored).all().item<bool>());
    }

    [Fact]
    public void Int4_round_trips_multiples_of_one_seventh_exactly()
    {
        var values = Enumerable.Range(-7, 15).Select(k => k / 7f).ToArray();
        using var quantized = Blockwise4BitQuantizer.Quantize(tensor(values), QuantizationType.Int4, 32);
        using var restored = Blockwise4BitQuantizer.Dequantize(quantized);
        Assert.Equal(values, restored.data<float>().ToArray());
        Assert.Equal(7, Unpack(quantized.Packed, 15)[7]); // zero takes code 7, the positive zero
    }

    [Fact]
    public void A_zero_block_dequantizes_to_zero()
    {
        var input = cat([zeros(64), ones(64)]);
        foreach (var type in Enum.GetValues<QuantizationType>())
        {
            using var quantized = Blockwise4BitQuantizer.Quantize(input, type, 64);
            using var restored = Blockwise4BitQuantizer.Dequantize(quantized);
            Assert.True(restored.eq(input).all().item<bool>(), type.ToString());
        }
    }

    [Theory]
    [InlineData(16)]
    [InlineData(48)]
    [InlineData(8192)]
    public void Unsupported_block_sizes_are_refused(int blockSize)
    {
        var error = Assert.Throws<ArgumentException>(() => Blockwise4BitQuantizer.Quantize(ones(128), QuantizationType.NF4, blockSize));
        Assert.Contains("32, 64, 128, 256, 512, 1024, 2048, 4096", error.Message);
        Assert.Contains(blockSize.ToString(CultureInfo.InvariantCulture), error.Message);
    }

    [Fact]
    public void Integer_tensors_are_refused()
    {
        var error = Assert.Throws<ArgumentException>(() => Blockwise4BitQuantizer.Quantize(ones(128, dtype: ScalarType.Int32)));
        Assert.Contains("Int32", error.Message);
    }

    internal static Tensor DeterministicVector() =>
        tensor(Enumerable.Range(0, 130).Select(i => ((i * 37 % 101) - 50) / 25f).ToArray());

    private static byte[] Unpack(Tensor packed, int count)
    {
        var bytes = packed.data<byte>().ToArray();
        return Enumerable.Range(0, count).Select(i => (byte)(i % 2 == 0 ? bytes[i / 2] >> 4 : bytes[i / 2] & 15)).ToArray();
    }

    private static (double Error, double Relative) Errors(Tensor input, QuantizationType type, int blockSize, bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        using var quantized = Blockwise4BitQuantizer.Quantize(input, type, blockSize, doubleQuant);
        var restored = Blockwise4BitQuantizer.Dequantize(quantized);
        var error = (input - restored).abs();
        return (error.mean().item<float>(), (error / (input.abs() + 1e-8)).mean().item<float>());
    }
}
