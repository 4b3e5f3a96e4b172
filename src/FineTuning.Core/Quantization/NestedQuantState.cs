using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// The second level of double quantization (bitsandbytes' <c>state2</c>): the 8-bit codes of <c>absmax − offset</c>
/// are scaled per block of <see cref="BlockSize"/> (256) codes by <see cref="Absmax"/>, through the 256-value
/// <see cref="Code"/> map (the signed dynamic map).
/// </summary>
/// <param name="Absmax">float32 scale per block of 8-bit codes, [ceil(n_blocks / BlockSize)] (<c>nested_absmax</c>).</param>
/// <param name="Code">float32 [256], the 8-bit map (<c>nested_quant_map</c>).</param>
/// <param name="BlockSize">Codes per second-level block (<c>nested_blocksize</c>, 256).</param>
public sealed record NestedQuantState(Tensor Absmax, Tensor Code, int BlockSize) : IDisposable
{
    /// <summary>Bytes held: the scales and the map.</summary>
    public long StorageBytes => Absmax.numel() * Absmax.element_size() + Code.numel() * Code.element_size();

    /// <summary>A copy on another device (the tensors are moved, not shared).</summary>
    /// <param name="device">The target device.</param>
    /// <returns>The new state.</returns>
    public NestedQuantState To(Device device) => new(Absmax.to(device).DetachFromDisposeScope(), Code.to(device).DetachFromDisposeScope(), BlockSize);

    /// <inheritdoc />
    public void Dispose()
    {
        Absmax.Dispose();
        Code.Dispose();
    }
}
