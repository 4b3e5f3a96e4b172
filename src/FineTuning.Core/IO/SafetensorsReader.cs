using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Reads tensors from one safetensors file. The header is parsed and validated when the reader is created; tensor
/// data is read lazily, one tensor at a time (seek + read), so the file is never loaded into memory as a whole.
/// </summary>
/// <remarks>
/// Validation covers the header length, the JSON syntax, each entry's <c>dtype</c>/<c>shape</c>/<c>data_offsets</c>,
/// that each tensor's byte range matches its shape and dtype, that no two tensors overlap, and that the data area
/// holds every tensor. Every problem is reported as a <see cref="CheckpointFormatException"/>. A reader is not
/// thread-safe.
/// </remarks>
public sealed class SafetensorsReader : IDisposable
{
    /// <summary>The largest header accepted, in bytes (the same limit as the reference Rust implementation).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const string MetadataKey = "__metadata__";
    private const int DefaultChunkBytes = 1 << 30;

    private readonly FileStream _stream;
    private readonly Dictionary<string, SafetensorsTensorInfo> _tensors;
    private readonly int _chunkBytes;
    private bool _disposed;

    /// <summary>Opens <paramref name="filePath"/> and parses and validates its header.</summary>
    /// <param name="filePath">The safetensors file.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="CheckpointFormatException">The header is malformed or inconsistent with the file.</exception>
    public SafetensorsReader(string filePath)
        : this(filePath, DefaultChunkBytes)
    {
    }

    /// <summary>Opens a file, reading large tensors in chunks of at most <paramref name="chunkBytes"/> bytes (tests use a small value).</summary>
    internal SafetensorsReader(string filePath, int chunkBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(filePath);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(chunkBytes);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("Safetensors files are little-endian; big-endian hosts are not supported.");
        }

        _chunkBytes = chunkBytes;
        FilePath = Path.GetFullPath(filePath);
        _stream = new FileStream(FilePath, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1, FileOptions.RandomAccess);
        try
        {
            var header = ReadHeader(out long dataStart);
            DataStart = dataStart;
            DataLength = _stream.Length - dataStart;
            (_tensors, Metadata) = ParseHeader(header);
            ValidateLayout();
            TensorNames = Array.AsReadOnly(_tensors.Values.OrderBy(t => t.Begin).ThenBy(t => t.Name, StringComparer.Ordinal).Select(t => t.Name).ToArray());
        }
        catch
        {
            _stream.Dispose();
            throw;
        }
    }

    /// <summary>The full path of the file.</summary>
    public string FilePath { get; }

    /// <summary>The tensor names, in the order their data appears in the file.</summary>
    public IReadOnlyList<string> TensorNames { get; }

    /// <summary>The header entry of every tensor, by name.</summary>
    public IReadOnlyDictionary<string, SafetensorsTensorInfo> Tensors => _tensors;

    /// <summary>The string-to-string <c>__metadata__</c> of the header (empty when the file has none).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>The absolute file offset where the data area starts (8 + header length).</summary>
    public long DataStart { get; }

    /// <summary>The size of the data area in bytes.</summary>
    public long DataLength { get; }

    /// <summary>Whether the file contains a tensor named <paramref name="name"/>.</summary>
    /// <param name="name">A tensor name.</param>
    /// <returns><see langword="true"/> when the tensor is present.</returns>
    public bool Contains(string name) => _tensors.ContainsKey(name);

    /// <summary>Returns the header entry of a tensor.</summary>
    /// <param name="name">A tensor name.</param>
    /// <returns>The tensor's dtype, shape and byte range.</returns>
    /// <exception cref="CheckpointFormatException">The file has no such tensor.</exception>
    public SafetensorsTensorInfo GetInfo(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_tensors.TryGetValue(name, out var info))
        {
            return info;
        }

        throw new CheckpointFormatException($"Safetensors file '{FilePath}' has no tensor named '{name}'.", FilePath, name);
    }

    /// <summary>Reads a tensor into a new tensor.</summary>
    /// <param name="name">The tensor's name.</param>
    /// <param name="device">Where to create the tensor; CPU when <see langword="null"/>. The meta device is rejected.</param>
    /// <param name="dtype">The element type to convert to; the file's dtype when <see langword="null"/>.</param>
    /// <returns>A new tensor the caller owns.</returns>
    /// <exception cref="CheckpointFormatException">The file has no such tensor, or its data cannot be read.</exception>
    public Tensor ReadTensor(string name, Device? device = null, ScalarType? dtype = null)
    {
        ThrowIfDisposed();
        var info = GetInfo(name);
        if (device is not null && device.type == DeviceType.META)
        {
            throw new ArgumentException(
                $"Cannot read tensor '{name}' from '{FilePath}' onto the meta device: meta tensors have no storage.", nameof(device));
        }

        var tensor = torch.empty(info.Shape.ToArray(), info.ScalarType, torch.CPU);
        try
        {
            ReadRaw(info, tensor);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }

        bool convertType = dtype.HasValue && dtype.Value != info.ScalarType;
        bool move = device is not null && device.type != DeviceType.CPU;
        if (!convertType && !move)
        {
            return tensor;
        }

        using (tensor)
        {
            return tensor.to(dtype ?? info.ScalarType, device ?? torch.CPU);
        }
    }

    /// <summary>
    /// Reads exactly the tensors of <paramref name="expected"/> into them. Every check comes before the first read — no
    /// other tensor in the file, none missing, every shape equal — so a refused file leaves the destinations as they
    /// were. The caller words the errors, since only it knows what the tensors are.
    /// </summary>
    /// <param name="expected">Tensor name → destination.</param>
    /// <param name="unexpected">Builds the error for the file's tensors that are not expected (at least one, in file order).</param>
    /// <param name="missing">Builds the error for the expected tensors the file lacks (at least one, in the order given).</param>
    /// <param name="shapeMismatch">Builds the error for a tensor whose shape differs from its destination's.</param>
    public void ReadExactly(
        IReadOnlyDictionary<string, torch.Tensor> expected,
        Func<IReadOnlyList<string>, Exception> unexpected,
        Func<IReadOnlyList<string>, Exception> missing,
        Func<string, SafetensorsTensorInfo, Exception> shapeMismatch)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(expected);
        var extra = TensorNames.Where(name => !expected.ContainsKey(name)).ToList();
        if (extra.Count > 0)
        {
            throw unexpected(extra);
        }

        var absent = expected.Keys.Where(name => !Contains(name)).ToList();
        if (absent.Count > 0)
        {
            throw missing(absent);
        }

        foreach (var (name, destination) in expected)
        {
            var info = GetInfo(name);
            if (!info.Shape.SequenceEqual(destination.shape))
            {
                throw shapeMismatch(name, info);
            }
        }

        foreach (var (name, destination) in expected)
        {
            ReadInto(name, destination);
        }
    }

    /// <summary>
    /// Reads a tensor into an existing tensor of the same shape. A contiguous CPU destination of the file's dtype
    /// receives the bytes directly; any other destination receives a converted copy (dtype and device) made
    /// without recording gradients.
    /// </summary>
    /// <param name="name">The tensor's name.</param>
    /// <param name="destination">The tensor to fill, for example a module parameter.</param>
    /// <exception cref="CheckpointFormatException">No such tensor, a shape mismatch, or unreadable data.</exception>
    /// <exception cref="ArgumentException"><paramref name="destination"/> is on the meta device, where loading would silently do nothing.</exception>
    public void ReadInto(string name, Tensor destination)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(destination);
        var info = GetInfo(name);
        if (destination.is_meta)
        {
            throw new ArgumentException(
                $"Cannot load tensor '{name}' from '{FilePath}' into a tensor on the meta device: meta tensors have no storage, so the load would silently do nothing. Create the model on a real device (for example CPU) first.",
                nameof(destination));
        }

        long[] expected = destination.shape;
        if (!expected.AsSpan().SequenceEqual(info.Shape.ToArray()))
        {
            throw new CheckpointFormatException(
                $"Safetensors file '{FilePath}': tensor '{name}' has shape {info.ShapeText} but the destination expects shape {SafetensorsTensorInfo.FormatShape(expected)}.",
                FilePath,
                name);
        }

        using (torch.no_grad())
        {
            if (destination.device_type == DeviceType.CPU && destination.dtype == info.ScalarType && destination.is_contiguous())
            {
                ReadRaw(info, destination);
                return;
            }

            using var staging = torch.empty(info.Shape.ToArray(), info.ScalarType, torch.CPU);
            ReadRaw(info, staging);
            destination.copy_(staging);
        }
    }

    /// <summary>Closes the file.</summary>
    public void Dispose()
    {
        if (!_disposed)
        {
            _disposed = true;
            _stream.Dispose();
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    /// <summary>Reads the tensor's bytes into <paramref name="target"/>, a contiguous CPU tensor of the file's dtype and shape.</summary>
    private void ReadRaw(SafetensorsTensorInfo info, Tensor target)
    {
        if (info.ByteLength == 0)
        {
            return;
        }

        try
        {
            _stream.Seek(DataStart + info.Begin, SeekOrigin.Begin);
            if (info.ByteLength <= _chunkBytes)
            {
                _stream.ReadExactly(target.bytes);
                return;
            }

            int elementSize = SafetensorsDType.GetElementSize(info.ScalarType);
            long elementsPerChunk = Math.Max(1, _chunkBytes / elementSize);
            long elementCount = info.ElementCount;
            using var flat = target.reshape(-1);
            for (long start = 0; start < elementCount; start += elementsPerChunk)
            {
                using var chunk = flat.narrow(0, start, Math.Min(elementsPerChunk, elementCount - start));
                _stream.ReadExactly(chunk.bytes);
            }
        }
        catch (EndOfStreamException ex)
        {
            throw new CheckpointFormatException(
                $"Safetensors file '{FilePath}' ended while reading tensor '{info.Name}' (data_offsets [{info.Begin}, {info.End}]): the file is truncated.",
                FilePath,
                info.Name,
                ex);
        }
    }

    private byte[] ReadHeader(out long dataStart)
    {
        long fileLength = _stream.Length;
        if (fileLength < 8)
        {
            throw Error($"is {fileLength} bytes long, too short for the 8-byte header length.");
        }

        Span<byte> prefix = stackalloc byte[8];
        _stream.ReadExactly(prefix);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > (ulong)(fileLength - 8))
        {
            throw Error($"declares a header of {headerLength} bytes, which goes beyond the end of the file ({fileLength} bytes).");
        }

        if (headerLength > MaxHeaderLength)
        {
            throw Error($"declares a header of {headerLength} bytes, more than the {MaxHeaderLength} bytes allowed.");
        }

        var header = new byte[(int)headerLength];
        _stream.ReadExactly(header);
        dataStart = 8 + (long)headerLength;
        return header;
    }

    private (Dictionary<string, SafetensorsTensorInfo> Tensors, IReadOnlyDictionary<string, string> Metadata) ParseHeader(byte[] header)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException(
                $"Safetensors file '{FilePath}' has a malformed JSON header: {ex.Message}", FilePath, null, ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Error($"has a header that is a JSON {root.ValueKind}, not an object.");
            }

            var tensors = new Dictionary<string, SafetensorsTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (sawMetadata)
                    {
                        throw Error($"has more than one '{MetadataKey}' entry.");
                    }

                    sawMetadata = true;
                    ParseMetadata(property.Value, metadata);
                    continue;
                }

                if (tensors.ContainsKey(property.Name))
                {
                    throw Error($"lists tensor '{property.Name}' more than once.", property.Name);
                }

                tensors.Add(property.Name, ParseEntry(property.Name, property.Value));
            }

            return (tensors, metadata);
        }
    }

    private void ParseMetadata(JsonElement element, Dictionary<string, string> metadata)
    {
        if (element.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            throw Error($"has a '{MetadataKey}' entry that is a JSON {element.ValueKind}; expected an object of strings.");
        }

        foreach (var item in element.EnumerateObject())
        {
            if (item.Value.ValueKind != JsonValueKind.String)
            {
                throw Error($"has '{MetadataKey}' value '{item.Name}' that is a JSON {item.Value.ValueKind}; expected a string.");
            }

            metadata[item.Name] = item.Value.GetString()!;
        }
    }

    private SafetensorsTensorInfo ParseEntry(string name, JsonElement entry)
    {
        if (entry.ValueKind != JsonValueKind.Object)
        {
            throw Error($"has a header entry for tensor '{name}' that is a JSON {entry.ValueKind}; expected an object with dtype, shape and data_offsets.", name);
        }

        if (!entry.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw Error($"has no string 'dtype' for tensor '{name}'.", name);
        }

        string dtype = dtypeElement.GetString()!;
        var scalarType = SafetensorsDType.ToScalarType(dtype, FilePath, name);

        long[] shape = ReadIntegerArray(entry, "shape", name);
        long[] offsets = ReadIntegerArray(entry, "data_offsets", name);
        if (offsets.Length != 2)
        {
            throw Error($"has {offsets.Length} data_offsets for tensor '{name}'; expected exactly 2 ([begin, end]).", name);
        }

        long begin = offsets[0];
        long end = offsets[1];
        if (end < begin)
        {
            throw Error($"has data_offsets [{begin}, {end}] for tensor '{name}': the end is before the beginning.", name);
        }

        long expectedBytes;
        try
        {
            long count = 1;
            foreach (long dimension in shape)
            {
                count = checked(count * dimension);
            }

            expectedBytes = checked(count * SafetensorsDType.GetElementSize(scalarType));
        }
        catch (OverflowException ex)
        {
            throw new CheckpointFormatException(
                $"Safetensors file '{FilePath}': tensor '{name}' has shape {SafetensorsTensorInfo.FormatShape(shape)}, too large to address.", FilePath, name, ex);
        }

        if (end - begin != expectedBytes)
        {
            throw Error(
                $"has data_offsets [{begin}, {end}] ({end - begin} bytes) for tensor '{name}', but its shape {SafetensorsTensorInfo.FormatShape(shape)} of {dtype} needs {expectedBytes} bytes.",
                name);
        }

        return new SafetensorsTensorInfo(name, dtype, scalarType, Array.AsReadOnly(shape), begin, end);
    }

    private long[] ReadIntegerArray(JsonElement entry, string property, string name)
    {
        if (!entry.TryGetProperty(property, out var array) || array.ValueKind != JsonValueKind.Array)
        {
            throw Error($"has no '{property}' array for tensor '{name}'.", name);
        }

        var values = new long[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out long value) || value < 0)
            {
                throw Error($"has '{property}' of tensor '{name}' containing {item.GetRawText()}; expected non-negative integers.", name);
            }

            values[i++] = value;
        }

        return values;
    }

    private void ValidateLayout()
    {
        var last = _tensors.Values.OrderByDescending(t => t.End).FirstOrDefault();
        if (last is not null && last.End > DataLength)
        {
            throw Error(
                $"is truncated or has data_offsets outside the data area: tensor '{last.Name}' has data_offsets [{last.Begin}, {last.End}] but the data area after the header is only {DataLength} bytes.",
                last.Name);
        }

        SafetensorsTensorInfo? previous = null;
        foreach (var info in _tensors.Values.Where(t => t.ByteLength > 0).OrderBy(t => t.Begin).ThenBy(t => t.End))
        {
            if (previous is not null && info.Begin < previous.End)
            {
                throw Error(
                    $"has overlapping data: tensor '{info.Name}' (data_offsets [{info.Begin}, {info.End}]) overlaps tensor '{previous.Name}' (data_offsets [{previous.Begin}, {previous.End}]).",
                    info.Name);
            }

            previous = info;
        }
    }

    private CheckpointFormatException Error(string problem, string? tensorName = null) =>
        new($"Safetensors file '{FilePath}' {problem}", FilePath, tensorName);
}
