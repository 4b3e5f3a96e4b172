using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>The block arithmetic shared by the blockwise quantizers: zero-padding a flat tensor into rows of one block each.</summary>
internal static class BlockLayout
{
    /// <summary>The first <paramref name="count"/> values, zero-padded to whole blocks, as [blocks, blockSize].</summary>
    public static Tensor Grid(Tensor values, long count, int blockSize)
    {
        var blocks = (count + blockSize - 1) / blockSize;
        var length = values.shape[0];
        var padded = length == blocks * blockSize ? values
            : length > blocks * blockSize ? values.narrow(0, 0, blocks * blockSize)
            : nn.functional.pad(values, [0, blocks * blockSize - length]);
        return padded.view(blocks, blockSize);
    }

    /// <summary>Multiplies each block of flat values by its absmax and returns the first <paramref name="count"/> results.</summary>
    public static Tensor Scale(Tensor values, Tensor absmax, int blockSize, long count) =>
        (Grid(values, count, blockSize) * absmax.unsqueeze(1)).reshape(-1).narrow(0, 0, count);
}
