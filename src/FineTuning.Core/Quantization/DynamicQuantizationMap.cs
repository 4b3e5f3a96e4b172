using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// bitsandbytes' 8-bit dynamic ("tree") quantization maps (<c>create_dynamic_map</c>): 256 float32 values spanning
/// seven decades, used for double quantization of 4-bit scales (signed) and for 8-bit optimizer states (signed for
/// the first moment, unsigned for the second).
/// </summary>
/// <remarks>
/// For each decade i = 0…6 the map holds the midpoints of <c>linspace(0.1, 1, k + 1)</c> scaled by 10^(i−6), with
/// k = 2^i (signed, plus the negated copies) or 2^(i+1) (unsigned); then 0 and 1.0. The arithmetic is float32, as in
/// bitsandbytes (the linspace runs through libtorch's own kernel), so the values are the same bit for bit.
/// </remarks>
public static class DynamicQuantizationMap
{
    private const int Decades = 7;
    private static readonly Lazy<float[]> SignedMap = new(() => Create(signed: true));
    private static readonly Lazy<float[]> UnsignedMap = new(() => Create(signed: false));

    /// <summary>The signed map: 127 negative values (the smallest is −0.99296875), 0 at index 127, 127 positive values and 1.0.</summary>
    public static IReadOnlyList<float> Signed => SignedMap.Value;

    /// <summary>The unsigned map: 0, then 254 positive values from 3.25e-7 and 1.0.</summary>
    public static IReadOnlyList<float> Unsigned => UnsignedMap.Value;

    private static float[] Create(bool signed)
    {
        var values = new List<float>(256);
        for (var i = 0; i < Decades; i++)
        {
            var count = signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
            using var boundaries = linspace(0.1, 1.0, count, dtype: ScalarType.Float32);
            using var means = (boundaries.narrow(0, 0, count - 1) + boundaries.narrow(0, 1, count - 1)) / 2.0f;
            var scale = (float)Math.Pow(10, i - (Decades - 1));
            foreach (var mean in means.data<float>().ToArray())
            {
                values.Add(scale * mean);
                if (signed)
                {
                    values.Add(-scale * mean);
                }
            }
        }

        values.Add(0f);
        values.Add(1f);
        while (values.Count < 256)
        {
            values.Add(0f);
        }

        values.Sort();
        return [.. values];
    }
}
