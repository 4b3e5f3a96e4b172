using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// How a 4-bit tensor was quantized (bitsandbytes' <c>QuantState</c>): one float32 absmax per block of
/// <see cref="BlockSize"/> elements, or, with double quantization, one 8-bit code per block plus <see cref="Offset"/>
/// and <see cref="Nested"/>; the 16-value <see cref="Code"/> table; the original shape and dtype.
/// </summary>
/// <param name="Absmax">float32 [n_blocks], or uint8 [n_blocks] when <see cref="Nested"/> is set (bitsandbytes' <c>absmax</c>).</param>
/// <param name="Code">float32 [16], the value of each 4-bit code (<c>quant_map</c>).</param>
/// <param name="Shape">The shape of the original tensor, e.g. [out_features, in_features].</param>
/// <param name="DType">The original dtype; dequantization returns it by default.</param>
/// <param name="BlockSize">Elements per block (32…4096, a power of two).</param>
/// <param name="Type">The 4-bit data type.</param>
/// <param name="Offset">With double quantization, the float32 scalar mean of the absmax values (<c>nested_offset</c>); else <c>null</c>.</param>
/// <param name="Nested">With double quantization, the second level (<c>state2</c>); else <c>null</c>.</param>
public sealed record QuantState(
    Tensor Absmax,
    Tensor Code,
    IReadOnlyList<long> Shape,
    ScalarType DType,
    int BlockSize,
    QuantizationType Type,
    Tensor? Offset = null,
    NestedQuantState? Nested = null) : IDisposable
{
    /// <summary>Whether the absmax values are themselves quantized (double quantization).</summary>
    public bool IsNested => Nested is not null;

    /// <summary>Elements of the original tensor.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Number of first-level blocks, ceil(<see cref="ElementCount"/> / <see cref="BlockSize"/>).</summary>
    public long BlockCount => (ElementCount + BlockSize - 1) / BlockSize;

    /// <summary>Bytes held besides the packed codes: absmax (or its codes, offset and second level) and the code table.</summary>
    public long StorageBytes =>
        Absmax.numel() * Absmax.element_size()
        + Code.numel() * Code.element_size()
        + (Offset is null ? 0 : Offset.numel() * Offset.element_size())
        + (Nested?.StorageBytes ?? 0);

    /// <summary>A copy on another device (tensors are moved, not shared).</summary>
    /// <param name="device">The target device.</param>
    /// <returns>The new state.</returns>
    public QuantState To(Device device) => this with
    {
        Absmax = Absmax.to(device).DetachFromDisposeScope(),
        Code = Code.to(device).DetachFromDisposeScope(),
        Offset = Offset?.to(device).DetachFromDisposeScope(),
        Nested = Nested?.To(device),
    };

    /// <inheritdoc />
    public void Dispose()
    {
        Absmax.Dispose();
        Code.Dispose();
        Offset?.Dispose();
        Nested?.Dispose();
    }
}
