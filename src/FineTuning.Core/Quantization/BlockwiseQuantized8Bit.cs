using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// A tensor quantized blockwise to 8-bit codes of a 256-value map: per block of <see cref="BlockSize"/> elements one
/// float32 absmax; each element stores the index of the map value nearest to element/absmax.
/// </summary>
/// <param name="Codes">uint8 codes, the input's shape.</param>
/// <param name="Absmax">float32 absmax per block, [ceil(n / blocksize)].</param>
/// <param name="BlockSize">Elements per block.</param>
public sealed record BlockwiseQuantized8Bit(Tensor Codes, Tensor Absmax, int BlockSize) : IDisposable
{
    /// <inheritdoc />
    public void Dispose()
    {
        Codes.Dispose();
        Absmax.Dispose();
    }
}
