using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Describes one tensor in a safetensors file, as given by the file's header.
/// </summary>
/// <param name="Name">The tensor's name (the header key), for example <c>model.layers.0.mlp.up_proj.weight</c>.</param>
/// <param name="DType">The safetensors dtype name, for example <c>"BF16"</c>.</param>
/// <param name="ScalarType">The TorchSharp element type matching <paramref name="DType"/>.</param>
/// <param name="Shape">The tensor's shape (empty for a scalar).</param>
/// <param name="Begin">Start of the tensor's bytes, relative to the beginning of the data area.</param>
/// <param name="End">End (exclusive) of the tensor's bytes, relative to the beginning of the data area.</param>
public sealed record SafetensorsTensorInfo(
    string Name,
    string DType,
    ScalarType ScalarType,
    IReadOnlyList<long> Shape,
    long Begin,
    long End)
{
    /// <summary>The number of bytes the tensor occupies in the file (<see cref="End"/> - <see cref="Begin"/>).</summary>
    public long ByteLength => End - Begin;

    /// <summary>The number of elements (the product of <see cref="Shape"/>; 1 for a scalar).</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dimension in Shape)
            {
                count *= dimension;
            }

            return count;
        }
    }

    /// <summary>The shape formatted like <c>[4, 8]</c>, for messages.</summary>
    public string ShapeText => FormatShape(Shape);

    internal static string FormatShape(IEnumerable<long> shape) => "[" + string.Join(", ", shape) + "]";
}
