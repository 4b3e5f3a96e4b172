using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// A tensor quantized to 4 bits blockwise, as bitsandbytes stores it: two codes per byte (the first element of each
/// pair in the high nibble), shape [(n + 1) / 2, 1], and the <see cref="QuantState"/> that restores it.
/// </summary>
/// <param name="Packed">uint8 [(n + 1) / 2, 1].</param>
/// <param name="State">Scales, code table, shape and dtype.</param>
public sealed record BlockwiseQuantized4Bit(Tensor Packed, QuantState State) : IDisposable
{
    /// <summary>Bytes held: packed codes plus <see cref="QuantState.StorageBytes"/>.</summary>
    public long StorageBytes => Packed.numel() * Packed.element_size() + State.StorageBytes;

    /// <summary>Storage per original element in bits (4.5 for blocksize 64 without double quantization, about 4.127 with it).</summary>
    public double BitsPerParameter => State.ElementCount == 0 ? 0 : StorageBytes * 8.0 / State.ElementCount;

    /// <inheritdoc />
    public void Dispose()
    {
        Packed.Dispose();
        State.Dispose();
    }
}
