using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// bitsandbytes' blockwise 8-bit quantization (<c>quantize_blockwise</c> / <c>dequantize_blockwise</c>): flatten,
/// split into blocks (the last may be partial), absmax per block in float32, scale by 1/absmax (clamped to [−1, 1]),
/// store the index of the nearest map value (a value on a midpoint takes the lower index).
/// </summary>
public static class Blockwise8BitQuantizer
{
    /// <summary>Quantizes a float tensor.</summary>
    /// <param name="input">Any float tensor (converted to float32).</param>
    /// <param name="map">The 256-value ascending map (<see cref="DynamicQuantizationMap"/>).</param>
    /// <param name="blockSize">Elements per block (bitsandbytes uses 256 for double quantization and optimizer states).</param>
    /// <returns>Codes and absmax, on the input's device.</returns>
    public static BlockwiseQuantized8Bit Quantize(Tensor input, IReadOnlyList<float> map, int blockSize = 256)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(map);
        if (map.Count != 256)
        {
            throw new ArgumentException($"An 8-bit map needs 256 values, got {map.Count}.", nameof(map));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        using var scope = NewDisposeScope();
        var flat = input.to(ScalarType.Float32).reshape(-1);
        var n = flat.shape[0];
        var grid = BlockLayout.Grid(flat, n, blockSize);
        var absmax = grid.abs().amax([1]);
        var scaled = (grid * (1.0f / absmax.clamp_min(1e-38f)).unsqueeze(1)).clamp(-1, 1).reshape(-1).narrow(0, 0, n);
        var codes = NearestIndex(scaled, map).to(ScalarType.Byte).reshape(input.shape);
        return new BlockwiseQuantized8Bit(codes.MoveToOuterDisposeScope(), absmax.MoveToOuterDisposeScope(), blockSize);
    }

    /// <summary>Restores float32 values: <c>map[code] · absmax[block]</c>.</summary>
    /// <param name="quantized">The quantized tensor.</param>
    /// <param name="map">The map it was quantized with.</param>
    /// <returns>A float32 tensor of the codes' shape.</returns>
    public static Tensor Dequantize(BlockwiseQuantized8Bit quantized, IReadOnlyList<float> map)
    {
        ArgumentNullException.ThrowIfNull(quantized);
        ArgumentNullException.ThrowIfNull(map);
        using var table = tensor(map.ToArray(), device: quantized.Codes.device);
        return Dequantize(quantized.Codes, quantized.Absmax, quantized.BlockSize, table);
    }

    /// <summary>Restores float32 values from codes, per-block absmax and a map held as a float32 tensor [256].</summary>
    internal static Tensor Dequantize(Tensor codes, Tensor absmax, int blockSize, Tensor map)
    {
        using var scope = NewDisposeScope();
        var values = map.index_select(0, codes.reshape(-1).to(ScalarType.Int64));
        var scaled = BlockLayout.Scale(values, absmax, blockSize, values.shape[0]);
        return scaled.reshape(codes.shape).MoveToOuterDisposeScope();
    }

    /// <summary>Index of the nearest ascending-table value for each element; a value on a midpoint takes the lower index.</summary>
    /// <param name="values">float32 values.</param>
    /// <param name="table">Ascending table.</param>
    /// <returns>int64 indices.</returns>
    internal static Tensor NearestIndex(Tensor values, IReadOnlyList<float> table)
    {
        var midpoints = new float[table.Count - 1];
        for (var i = 0; i < midpoints.Length; i++)
        {
            midpoints[i] = (table[i] + table[i + 1]) / 2f;
        }

        using var bounds = tensor(midpoints, device: values.device);
        return bucketize(values, bounds, right: false);
    }
}
