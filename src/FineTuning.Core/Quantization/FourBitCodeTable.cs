namespace FineTuning.Core.Quantization;

/// <summary>
/// The 16 float32 values of each 4-bit data type, indexed by code (bitsandbytes' <c>get_4bit_type</c>, the
/// <c>quant_map</c> of its checkpoints), and the thresholds that assign codes.
/// </summary>
public static class FourBitCodeTable
{
    // bitsandbytes' hard-coded NF4 table (functional.py get_4bit_type("nf4"), kernels.cu nf4_dequantization_lut):
    // ascending, so code = bucket index.
    private static readonly float[] Nf4Values =
    [
        -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
        -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
        0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
        0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
    ];

    // get_4bit_type("fp4"): raw values in bit-pattern order (bit 3 = sign), divided by their maximum 12 in float32.
    // Code 8 is +0.0: the Python list spells it "-0", an integer, so the stored quant_map has no negative zero.
    private static readonly float[] Fp4Values = Scale([0f, 0.0625f, 8f, 12f, 4f, 6f, 2f, 3f, 0f, -0.0625f, -8f, -12f, -4f, -6f, -2f, -3f], 12f);

    // get_4bit_type("int4"): [7 … 0, −0 … −7] / 7 (code 8 is +0.0 for the same reason).
    private static readonly float[] Int4Values = Scale([7f, 6f, 5f, 4f, 3f, 2f, 1f, 0f, 0f, -1f, -2f, -3f, -4f, -5f, -6f, -7f], 7f);

    /// <summary>NF4 (code 0 = −1, code 7 = 0, code 15 = 1; ascending).</summary>
    public static IReadOnlyList<float> NF4 { get; } = Array.AsReadOnly(Nf4Values);

    /// <summary>FP4 in bit-pattern order: <c>[0, 1/192, 2/3, 1, 1/3, 1/2, 1/6, 1/4, 0, −1/192, …, −1/4]</c> (code 8 is the sign bit on zero, stored as +0.0 as bitsandbytes stores it).</summary>
    public static IReadOnlyList<float> FP4 { get; } = Array.AsReadOnly(Fp4Values);

    /// <summary>Symmetric int4: <c>[7/7, 6/7, …, 0, 0, −1/7, …, −7/7]</c> (codes 7 and 8 are both zero).</summary>
    public static IReadOnlyList<float> Int4 { get; } = Array.AsReadOnly(Int4Values);

    /// <summary>The table of a type.</summary>
    /// <param name="type">The data type.</param>
    /// <returns>16 values indexed by code.</returns>
    public static IReadOnlyList<float> Get(QuantizationType type) => type switch
    {
        QuantizationType.NF4 => NF4,
        QuantizationType.FP4 => FP4,
        QuantizationType.Int4 => Int4,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown 4-bit type."),
    };

    /// <summary>bitsandbytes' name of a type: <c>nf4</c>, <c>fp4</c> or <c>int4</c>.</summary>
    /// <param name="type">The data type.</param>
    /// <returns>The lower-case name.</returns>
    public static string Name(QuantizationType type) => type switch
    {
        QuantizationType.NF4 => "nf4",
        QuantizationType.FP4 => "fp4",
        QuantizationType.Int4 => "int4",
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Unknown 4-bit type."),
    };

    /// <summary>Parses <c>nf4</c>, <c>fp4</c> or <c>int4</c> (any case).</summary>
    /// <param name="name">The name.</param>
    /// <param name="type">The type when the name is known.</param>
    /// <returns><c>true</c> when the name is known.</returns>
    public static bool TryParse(string? name, out QuantizationType type)
    {
        switch (name?.ToLowerInvariant())
        {
            case "nf4":
                type = QuantizationType.NF4;
                return true;
            case "fp4":
                type = QuantizationType.FP4;
                return true;
            case "int4":
                type = QuantizationType.Int4;
                return true;
            default:
                type = default;
                return false;
        }
    }

    /// <summary>The code a value of 0.0 gets (in a block whose absmax is not zero): NF4 7, FP4 0, Int4 7.</summary>
    /// <param name="type">The data type.</param>
    /// <returns>The code.</returns>
    public static byte ZeroCode(QuantizationType type) => type == QuantizationType.FP4 ? (byte)0 : (byte)7;

    /// <summary>
    /// NF4's 15 float32 midpoints between adjacent values (also the pivots of bitsandbytes' CUDA decision tree after
    /// rounding to float): a scaled value gets the number of midpoints strictly below it.
    /// </summary>
    internal static float[] Nf4Midpoints { get; } = Midpoints(Nf4Values);

    /// <summary>
    /// FP4's magnitude pivots, as float literals of bitsandbytes' <c>dQuantizeFP4</c> (0.583333f is not the exact
    /// float32 midpoint of 1/2 and 2/3; the literal is what CUDA compares against), ascending.
    /// </summary>
    internal static float[] Fp4MagnitudePivots { get; } = [0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f];

    /// <summary>FP4 code bits (without the sign) of the magnitudes in ascending order: 0, 1/192, 1/6, 1/4, 1/3, 1/2, 2/3, 1.</summary>
    internal static byte[] Fp4MagnitudeCodes { get; } = [0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011];

    /// <summary>Int4's magnitude pivots: float32 midpoints of k/7 and (k+1)/7.</summary>
    internal static float[] Int4MagnitudePivots { get; } = Midpoints([.. Enumerable.Range(0, 8).Select(k => k / 7f)]);

    private static float[] Scale(float[] raw, float max) => [.. raw.Select(v => v / max)];

    private static float[] Midpoints(float[] ascending)
    {
        var result = new float[ascending.Length - 1];
        for (var i = 0; i < result.Length; i++)
        {
            result[i] = (ascending[i] + ascending[i + 1]) / 2f;
        }

        return result;
    }
}
