using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Maps safetensors dtype names (<c>"F32"</c>, <c>"BF16"</c>, ...) to TorchSharp <see cref="ScalarType"/> values and back.
/// Supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8 and BOOL. Other safetensors dtypes (F8_E4M3, F8_E5M2,
/// U16, U32, U64, ...) have no TorchSharp equivalent and are rejected.
/// </summary>
public static class SafetensorsDType
{
    private static readonly (string Name, ScalarType Type, int Size)[] Table =
    [
        ("F64", ScalarType.Float64, 8),
        ("F32", ScalarType.Float32, 4),
        ("F16", ScalarType.Float16, 2),
        ("BF16", ScalarType.BFloat16, 2),
        ("I64", ScalarType.Int64, 8),
        ("I32", ScalarType.Int32, 4),
        ("I16", ScalarType.Int16, 2),
        ("I8", ScalarType.Int8, 1),
        ("U8", ScalarType.Byte, 1),
        ("BOOL", ScalarType.Bool, 1),
    ];

    /// <summary>The supported safetensors dtype names.</summary>
    public static IReadOnlyList<string> SupportedNames { get; } = Array.AsReadOnly(Table.Select(e => e.Name).ToArray());

    /// <summary>Looks up the TorchSharp type for a safetensors dtype name (case-sensitive, as in the format).</summary>
    /// <param name="dtype">A safetensors dtype name such as <c>"BF16"</c>.</param>
    /// <param name="scalarType">The matching TorchSharp type, when supported.</param>
    /// <returns><see langword="true"/> when <paramref name="dtype"/> is supported.</returns>
    public static bool TryGetScalarType(string dtype, out ScalarType scalarType)
    {
        foreach (var entry in Table)
        {
            if (string.Equals(entry.Name, dtype, StringComparison.Ordinal))
            {
                scalarType = entry.Type;
                return true;
            }
        }

        scalarType = default;
        return false;
    }

    /// <summary>Returns the TorchSharp type for a dtype read from <paramref name="filePath"/>, or throws naming the file, tensor and the supported list.</summary>
    /// <param name="dtype">A safetensors dtype name.</param>
    /// <param name="filePath">The file the dtype was read from (for the error message).</param>
    /// <param name="tensorName">The tensor the dtype belongs to (for the error message).</param>
    /// <returns>The matching TorchSharp type.</returns>
    /// <exception cref="CheckpointFormatException">The dtype is not supported.</exception>
    public static ScalarType ToScalarType(string dtype, string filePath, string tensorName)
    {
        if (TryGetScalarType(dtype, out var scalarType))
        {
            return scalarType;
        }

        throw new CheckpointFormatException(
            $"Safetensors file '{filePath}': tensor '{tensorName}' has unsupported dtype '{dtype}'. Supported dtypes: {string.Join(", ", SupportedNames)}.",
            filePath,
            tensorName);
    }

    /// <summary>Looks up the safetensors dtype name for a TorchSharp type.</summary>
    /// <param name="scalarType">A TorchSharp element type.</param>
    /// <param name="name">The safetensors name, when supported.</param>
    /// <returns><see langword="true"/> when <paramref name="scalarType"/> can be stored in safetensors by this library.</returns>
    public static bool TryGetName(ScalarType scalarType, out string name)
    {
        foreach (var entry in Table)
        {
            if (entry.Type == scalarType)
            {
                name = entry.Name;
                return true;
            }
        }

        name = string.Empty;
        return false;
    }

    /// <summary>Returns the safetensors dtype name for a TorchSharp type.</summary>
    /// <param name="scalarType">A TorchSharp element type.</param>
    /// <returns>The safetensors name, such as <c>"BF16"</c>.</returns>
    /// <exception cref="ArgumentException">The type is not supported (for example a complex type).</exception>
    public static string GetName(ScalarType scalarType) =>
        TryGetName(scalarType, out var name)
            ? name
            : throw new ArgumentException(
                $"ScalarType {scalarType} cannot be stored in safetensors by this library. Supported dtypes: {string.Join(", ", SupportedNames)}.",
                nameof(scalarType));

    /// <summary>Returns the size in bytes of one element of a supported TorchSharp type.</summary>
    /// <param name="scalarType">A supported TorchSharp element type.</param>
    /// <returns>The element size in bytes.</returns>
    /// <exception cref="ArgumentException">The type is not supported.</exception>
    public static int GetElementSize(ScalarType scalarType)
    {
        foreach (var entry in Table)
        {
            if (entry.Type == scalarType)
            {
                return entry.Size;
            }
        }

        throw new ArgumentException(
            $"ScalarType {scalarType} is not a supported safetensors dtype. Supported dtypes: {string.Join(", ", SupportedNames)}.",
            nameof(scalarType));
    }
}
