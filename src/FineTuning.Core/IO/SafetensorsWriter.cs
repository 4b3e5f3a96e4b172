using System.Buffers.Binary;
using System.Text.Encodings.Web;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Writes safetensors files in the layout the Hugging Face <c>safetensors</c> library produces: a JSON header
/// (with <c>__metadata__</c> first, then the tensors ordered by decreasing element size and then by name), padded
/// with spaces so the data area starts on an 8-byte boundary, followed by the tensors' bytes back to back in
/// header order, with the last tensor ending exactly at the end of the file.
/// </summary>
/// <remarks>
/// Files are written atomically through <see cref="AtomicFile"/>, streaming one tensor at a time: a tensor that
/// is not a contiguous CPU tensor is copied to one just before it is written, and released right after.
/// </remarks>
public static class SafetensorsWriter
{
    private const string MetadataKey = "__metadata__";
    private const int DefaultChunkBytes = 1 << 30;

    /// <summary>The metadata written when none is given: <c>{"format": "pt"}</c>, which Hugging Face loaders expect.</summary>
    public static IReadOnlyDictionary<string, string> DefaultMetadata { get; } =
        new Dictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" }.AsReadOnly();

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> atomically. An existing file is replaced only when
    /// the whole write succeeds.
    /// </summary>
    /// <param name="path">The destination file; its folder must exist.</param>
    /// <param name="tensors">Name/tensor pairs. Names must be unique, non-empty and not <c>__metadata__</c>.</param>
    /// <param name="metadata">
    /// String metadata for the header's <c>__metadata__</c>; <see cref="DefaultMetadata"/> when <see langword="null"/>.
    /// A <c>format</c> entry of <c>pt</c> is added when missing, as Hugging Face loaders require it.
    /// </param>
    /// <exception cref="CheckpointFormatException">A duplicate or invalid name, or a tensor that cannot be stored (meta device, unsupported dtype).</exception>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, metadata, floatingPointDType: null, DefaultChunkBytes);

    /// <summary>Writes a file, converting floating-point tensors to <paramref name="floatingPointDType"/> when given.</summary>
    internal static void Write(
        string path,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata,
        ScalarType? floatingPointDType,
        int chunkBytes = DefaultChunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Safetensors files are little-endian; big-endian hosts are not supported.");
        }

        string fullPath = Path.GetFullPath(path);
        AtomicFile.Write(fullPath, stream => WriteTo(stream, fullPath, tensors, metadata, floatingPointDType, chunkBytes));
    }

    /// <summary>The dtype a tensor is stored as: <paramref name="floatingPointDType"/> for floating-point tensors when given, else its own.</summary>
    internal static ScalarType StoredType(Tensor tensor, ScalarType? floatingPointDType) =>
        floatingPointDType.HasValue && torch.is_floating_point(tensor) ? floatingPointDType.Value : tensor.dtype;

    private static void WriteTo(
        Stream stream,
        string path,
        IEnumerable<KeyValuePair<string, Tensor>> tensors,
        IReadOnlyDictionary<string, string>? metadata,
        ScalarType? floatingPointDType,
        int chunkBytes)
    {
        var entries = Plan(path, tensors, floatingPointDType);
        byte[] header = BuildHeader(entries, metadata);

        int padding = (8 - (header.Length % 8)) % 8;
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)(header.Length + padding));
        stream.Write(prefix);
        stream.Write(header);
        for (int i = 0; i < padding; i++)
        {
            stream.WriteByte((byte)' ');
        }

        foreach (var entry in entries)
        {
            WriteData(stream, entry, chunkBytes);
        }
    }

    private static List<Entry> Plan(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, ScalarType? floatingPointDType)
    {
        var entries = new List<Entry>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (string.IsNullOrEmpty(name) || name == MetadataKey)
            {
                throw new CheckpointFormatException(
                    $"Cannot write safetensors file '{path}': '{name}' is not a valid tensor name.", path, name);
            }

            if (!names.Add(name))
            {
                throw new CheckpointFormatException(
                    $"Cannot write safetensors file '{path}': tensor name '{name}' appears more than once.", path, name);
            }

            if (tensor is null)
            {
                throw new CheckpointFormatException($"Cannot write safetensors file '{path}': tensor '{name}' is null.", path, name);
            }

            if (tensor.is_meta)
            {
                throw new CheckpointFormatException(
                    $"Cannot write safetensors file '{path}': tensor '{name}' is on the meta device and has no data.", path, name);
            }

            var storedType = StoredType(tensor, floatingPointDType);
            if (!SafetensorsDType.TryGetName(storedType, out string dtypeName))
            {
                throw new CheckpointFormatException(
                    $"Cannot write safetensors file '{path}': tensor '{name}' has dtype {storedType}, which safetensors cannot store here. Supported dtypes: {string.Join(", ", SafetensorsDType.SupportedNames)}.",
                    path,
                    name);
            }

            int elementSize = SafetensorsDType.GetElementSize(storedType);
            entries.Add(new Entry(name, tensor, storedType, dtypeName, elementSize, tensor.shape, checked(tensor.numel() * elementSize)));
        }

        // The Rust safetensors writer orders tensors by dtype alignment (largest first), then by name.
        entries.Sort((a, b) =>
        {
            int bySize = b.ElementSize.CompareTo(a.ElementSize);
            return bySize != 0 ? bySize : string.CompareOrdinal(a.Name, b.Name);
        });
        return entries;
    }

    private static byte[] BuildHeader(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var effectiveMetadata = new SortedDictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in metadata ?? DefaultMetadata)
        {
            effectiveMetadata[key] = value ?? throw new ArgumentException($"Metadata value for '{key}' is null.", nameof(metadata));
        }

        effectiveMetadata.TryAdd("format", "pt");

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteStartObject(MetadataKey);
            foreach (var (key, value) in effectiveMetadata)
            {
                json.WriteString(key, value);
            }

            json.WriteEndObject();

            long offset = 0;
            foreach (var entry in entries)
            {
                json.WriteStartObject(entry.Name);
                json.WriteString("dtype", entry.DTypeName);
                json.WriteStartArray("shape");
                foreach (long dimension in entry.Shape)
                {
                    json.WriteNumberValue(dimension);
                }

                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                offset += entry.ByteLength;
                json.WriteNumberValue(offset);
                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndObject();
        }

        return buffer.ToArray();
    }

    private static void WriteData(Stream stream, Entry entry, int chunkBytes)
    {
        if (entry.ByteLength == 0)
        {
            return;
        }

        using (torch.no_grad())
        {
            Tensor source = entry.Tensor;
            Tensor? owned = null;
            try
            {
                if (source.device_type != DeviceType.CPU || source.dtype != entry.StoredType)
                {
                    owned = source.to(entry.StoredType, torch.CPU);
                    source = owned;
                }

                if (!source.is_contiguous())
                {
                    var contiguous = source.contiguous();
                    owned?.Dispose();
                    owned = contiguous;
                    source = contiguous;
                }

                if (entry.ByteLength <= chunkBytes)
                {
                    stream.Write(source.bytes);
                    return;
                }

                long elementCount = source.numel();
                long elementsPerChunk = Math.Max(1, chunkBytes / entry.ElementSize);
                using var flat = source.reshape(-1);
                for (long start = 0; start < elementCount; start += elementsPerChunk)
                {
                    using var chunk = flat.narrow(0, start, Math.Min(elementsPerChunk, elementCount - start));
                    stream.Write(chunk.bytes);
                }
            }
            finally
            {
                owned?.Dispose();
            }
        }
    }

    private sealed record Entry(
        string Name,
        Tensor Tensor,
        ScalarType StoredType,
        string DTypeName,
        int ElementSize,
        long[] Shape,
        long ByteLength);
}
