using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Loads and saves the weights of a TorchSharp module in a Hugging Face model folder: either one
/// <c>model.safetensors</c>, or shards (<c>model-00001-of-00003.safetensors</c>, ...) described by
/// <c>model.safetensors.index.json</c>. Tensor names are the module's dotted parameter and buffer names, so a module
/// tree that mirrors the Hugging Face one (<c>model.layers.0.self_attn.q_proj.weight</c>, ...) reads and writes
/// Hugging Face checkpoints directly.
/// </summary>
/// <remarks>
/// The tensors involved are the module's <c>named_parameters()</c> plus its persistent buffers, each once: a weight
/// shared by two modules (a tied <c>lm_head</c>) is listed under its first name only (for CPU tensors this holds
/// even when TorchSharp's own handle-based de-duplication misses the tie).
/// </remarks>
public static partial class HuggingFaceWeights
{
    /// <summary>The file name of unsharded weights: <c>model.safetensors</c>.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>The file name of the shard index: <c>model.safetensors.index.json</c>.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    /// <summary>
    /// Loads every parameter and persistent buffer of <paramref name="model"/> from <paramref name="modelDirectory"/>,
    /// converting each file tensor to the dtype and device of the model tensor it fills.
    /// </summary>
    /// <param name="model">The module to fill. Its tensors must not be on the meta device.</param>
    /// <param name="modelDirectory">The folder holding <c>model.safetensors</c> or <c>model.safetensors.index.json</c> and its shards.</param>
    /// <param name="options">Which unexpected or missing tensors to tolerate; <see cref="WeightLoadOptions.Default"/> when <see langword="null"/>.</param>
    /// <returns>Counts and files, for logging.</returns>
    /// <exception cref="CheckpointFormatException">
    /// No weights in the folder, a malformed file or index, a shard that does not exist, a tensor the index lists but
    /// its shard lacks, a model tensor missing from the files, a file tensor the model does not have, or a shape
    /// mismatch. Everything is checked before any tensor is modified.
    /// </exception>
    /// <exception cref="ArgumentException">A model tensor is on the meta device.</exception>
    public static WeightLoadResult Load(nn.Module model, string modelDirectory, WeightLoadOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(modelDirectory);
        options ??= WeightLoadOptions.Default;
        string directory = Path.GetFullPath(modelDirectory);

        var targets = CollectTensors(model);
        var onMeta = targets.FirstOrDefault(t => t.Value.is_meta);
        if (onMeta.Key is not null)
        {
            throw new ArgumentException(
                $"Cannot load weights from '{directory}': model tensor '{onMeta.Key}' is on the meta device, which has no storage, so loading would silently do nothing. Create the model on a real device (for example CPU) first.",
                nameof(model));
        }

        var sources = OpenSources(directory);
        try
        {
            var targetByName = targets.ToDictionary(t => t.Key, t => t.Value, StringComparer.Ordinal);
            string searched = string.Join(", ", sources.Readers.Select(r => $"'{r.FilePath}'"));

            var ignoredMissing = new List<string>();
            var missing = new List<string>();
            foreach (var (name, _) in targets)
            {
                if (!sources.ReaderByTensor.ContainsKey(name))
                {
                    (options.IsIgnoredMissing(name) ? ignoredMissing : missing).Add(name);
                }
            }

            if (missing.Count > 0)
            {
                string others = missing.Count > 1 ? $" (and {missing.Count - 1} more: {string.Join(", ", missing.Skip(1).Take(10))}{(missing.Count > 11 ? ", ..." : string.Empty)})" : string.Empty;
                throw new CheckpointFormatException(
                    $"Model tensor '{missing[0]}'{others} is missing from the checkpoint in '{directory}'; files searched: {searched}.",
                    sources.DescriptorPath,
                    missing[0]);
            }

            var ignoredUnexpected = new List<string>();
            foreach (var reader in sources.Readers)
            {
                foreach (string name in reader.TensorNames)
                {
                    if (!ReferenceEquals(sources.ReaderByTensor.GetValueOrDefault(name), reader) || targetByName.ContainsKey(name))
                    {
                        continue;
                    }

                    if (!options.IsIgnoredUnexpected(name))
                    {
                        throw new CheckpointFormatException(
                            $"Tensor '{name}' in '{reader.FilePath}' does not match any parameter or persistent buffer of the model. If that is expected (for example 'lm_head.weight' of a model with tied embeddings), ignore it through WeightLoadOptions.",
                            reader.FilePath,
                            name);
                    }

                    ignoredUnexpected.Add(name);
                }
            }

            foreach (var (name, tensor) in targets)
            {
                if (sources.ReaderByTensor.TryGetValue(name, out var reader))
                {
                    var info = reader.GetInfo(name);
                    long[] expected = tensor.shape;
                    if (!expected.AsSpan().SequenceEqual(info.Shape.ToArray()))
                    {
                        throw new CheckpointFormatException(
                            $"Tensor '{name}' in '{reader.FilePath}' has shape {info.ShapeText}, but the model expects shape {SafetensorsTensorInfo.FormatShape(expected)}.",
                            reader.FilePath,
                            name);
                    }
                }
            }

            int loaded = 0;
            long bytesRead = 0;
            var filesRead = new List<string>();
            foreach (var reader in sources.Readers)
            {
                bool any = false;
                foreach (string name in reader.TensorNames)
                {
                    if (ReferenceEquals(sources.ReaderByTensor.GetValueOrDefault(name), reader) && targetByName.TryGetValue(name, out var tensor))
                    {
                        reader.ReadInto(name, tensor);
                        loaded++;
                        bytesRead += reader.GetInfo(name).ByteLength;
                        any = true;
                    }
                }

                if (any)
                {
                    filesRead.Add(reader.FilePath);
                }
            }

            return new WeightLoadResult(loaded, bytesRead, filesRead.AsReadOnly(), ignoredUnexpected.AsReadOnly(), ignoredMissing.AsReadOnly());
        }
        finally
        {
            foreach (var reader in sources.Readers)
            {
                reader.Dispose();
            }
        }
    }

    /// <summary>
    /// Saves every parameter and persistent buffer of <paramref name="model"/> into <paramref name="modelDirectory"/>
    /// (created if needed) as <c>model.safetensors</c>, or, when <see cref="WeightSaveOptions.MaxShardBytes"/> is
    /// exceeded, as <c>model-0000i-of-0000n.safetensors</c> shards plus <c>model.safetensors.index.json</c>. Every
    /// file is written atomically.
    /// </summary>
    /// <param name="model">The module whose tensors are saved.</param>
    /// <param name="modelDirectory">The destination folder.</param>
    /// <param name="options">Sharding, dtype and metadata; <see cref="WeightSaveOptions.Default"/> when <see langword="null"/>.</param>
    /// <returns>The files written and sizes, for logging.</returns>
    /// <remarks>
    /// As Hugging Face's <c>save_pretrained</c> does, weights of the other layout left by an earlier save are removed
    /// after a successful save (a stale <c>model.safetensors</c> next to a new index, or a stale index and
    /// <c>model-*-of-*.safetensors</c> shards that are not part of the new save), so that loading finds the new weights.
    /// </remarks>
    /// <exception cref="CheckpointFormatException">A tensor cannot be stored (unsupported dtype).</exception>
    /// <exception cref="ArgumentException">A model tensor is on the meta device.</exception>
    public static WeightSaveResult Save(nn.Module model, string modelDirectory, WeightSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        return SaveTensors(CollectTensors(model), modelDirectory, options);
    }

    /// <summary>Saves named tensors as <see cref="Save(nn.Module, string, WeightSaveOptions?)"/> saves a module's.</summary>
    internal static WeightSaveResult SaveTensors(List<KeyValuePair<string, Tensor>> tensors, string modelDirectory, WeightSaveOptions? options)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelDirectory);
        options ??= WeightSaveOptions.Default;
        string directory = Path.GetFullPath(modelDirectory);

        var sizes = new long[tensors.Count];
        for (int i = 0; i < tensors.Count; i++)
        {
            var (name, tensor) = tensors[i];
            if (tensor.is_meta)
            {
                throw new ArgumentException(
                    $"Cannot save weights to '{directory}': model tensor '{name}' is on the meta device and has no data.", nameof(tensors));
            }

            var stored = SafetensorsWriter.StoredType(tensor, options.DType);
            if (!SafetensorsDType.TryGetName(stored, out _))
            {
                throw new CheckpointFormatException(
                    $"Cannot save model tensor '{name}' to '{directory}': dtype {stored} is not supported by safetensors here. Supported dtypes: {string.Join(", ", SafetensorsDType.SupportedNames)}.",
                    directory,
                    name);
            }

            sizes[i] = tensor.numel() * SafetensorsDType.GetElementSize(stored);
        }

        long totalBytes = sizes.Sum();
        var shards = Split(sizes, options.MaxShardBytes);
        Directory.CreateDirectory(directory);

        var written = new List<string>();
        string? indexPath = null;
        if (shards.Count == 1)
        {
            string path = Path.Combine(directory, SingleFileName);
            SafetensorsWriter.Write(path, tensors, options.Metadata, options.DType);
            written.Add(path);
        }
        else
        {
            var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
            for (int s = 0; s < shards.Count; s++)
            {
                string fileName = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
                string path = Path.Combine(directory, fileName);
                var shardTensors = shards[s].Select(i => tensors[i]).ToList();
                SafetensorsWriter.Write(path, shardTensors, options.Metadata, options.DType);
                foreach (var (name, _) in shardTensors)
                {
                    weightMap[name] = fileName;
                }

                written.Add(path);
            }

            indexPath = Path.Combine(directory, IndexFileName);
            AtomicFile.Write(indexPath, stream => WriteIndex(stream, totalBytes, weightMap));
        }

        RemoveStaleWeights(directory, written, indexPath);
        return new WeightSaveResult(tensors.Count, totalBytes, written.AsReadOnly(), indexPath);
    }

    /// <summary>
    /// The module's parameters followed by its persistent buffers, by dotted name, each tensor once. TorchSharp
    /// de-duplicates a shared <c>Parameter</c> object by handle, but a weight tied through a native-backed module
    /// (for example <c>lm_head.weight = embed_tokens.weight</c> with <c>nn.Embedding</c>, whose getter returns a new
    /// wrapper each time) is listed twice; such aliases of the same CPU memory are dropped here, keeping the first name.
    /// </summary>
    internal static List<KeyValuePair<string, Tensor>> CollectTensors(nn.Module model)
    {
        var result = new List<KeyValuePair<string, Tensor>>();
        var seen = new HashSet<(nint Address, ScalarType DType, string Shape, string Strides)>();
        var all = model.named_parameters(recurse: true).Select(p => (p.name, (Tensor)p.parameter))
            .Concat(model.named_buffers(recurse: true, include_nonpersistent: false));
        foreach (var (name, tensor) in all)
        {
            var key = AliasKey(tensor);
            if (key is null || seen.Add(key.Value))
            {
                result.Add(new KeyValuePair<string, Tensor>(name, tensor));
            }
        }

        return result;
    }

    /// <summary>Identifies the memory a CPU tensor views (address of its first element, dtype, shape, strides); null when that cannot be told.</summary>
    private static (nint Address, ScalarType DType, string Shape, string Strides)? AliasKey(Tensor tensor)
    {
        if (tensor.device_type != DeviceType.CPU || tensor.numel() == 0 || !tensor.is_contiguous())
        {
            return null;
        }

        using var flat = tensor.reshape(-1);
        using var first = flat.narrow(0, 0, 1);
        nint address;
        unsafe
        {
            address = (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(first.bytes));
        }

        return (address, tensor.dtype, string.Join(",", tensor.shape), string.Join(",", tensor.stride()));
    }

    /// <summary>Greedy split in model order, like Hugging Face's sharding: a new shard starts when the next tensor would overflow the current one.</summary>
    private static List<List<int>> Split(long[] sizes, long? maxShardBytes)
    {
        var shards = new List<List<int>> { new() };
        long current = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            if (maxShardBytes.HasValue && shards[^1].Count > 0 && current + sizes[i] > maxShardBytes.Value)
            {
                shards.Add(new List<int>());
                current = 0;
            }

            shards[^1].Add(i);
            current += sizes[i];
        }

        return shards;
    }

    private static void WriteIndex(Stream stream, long totalBytes, SortedDictionary<string, string> weightMap)
    {
        using var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
        json.WriteStartObject();
        json.WriteStartObject("metadata");
        json.WriteNumber("total_size", totalBytes);
        json.WriteEndObject();
        json.WriteStartObject("weight_map");
        foreach (var (name, file) in weightMap)
        {
            json.WriteString(name, file);
        }

        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void RemoveStaleWeights(string directory, List<string> written, string? indexPath)
    {
        var keep = new HashSet<string>(written, StringComparer.Ordinal);
        if (indexPath is null)
        {
            File.Delete(Path.Combine(directory, IndexFileName));
        }
        else
        {
            File.Delete(Path.Combine(directory, SingleFileName));
        }

        foreach (string path in Directory.EnumerateFiles(directory, "model-*-of-*.safetensors"))
        {
            if (ShardFileName().IsMatch(Path.GetFileName(path)) && !keep.Contains(path))
            {
                File.Delete(path);
            }
        }
    }

    /// <summary>Opens the weight files of a folder (single file or shards); the caller disposes the readers.</summary>
    internal static Sources OpenSources(string directory)
    {
        if (!Directory.Exists(directory))
        {
            throw new CheckpointFormatException($"Model directory '{directory}' does not exist.", directory);
        }

        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(single))
        {
            var reader = new SafetensorsReader(single);
            return new Sources(single, [reader], reader.TensorNames.ToDictionary(n => n, _ => reader, StringComparer.Ordinal));
        }

        string index = Path.Combine(directory, IndexFileName);
        if (!File.Exists(index))
        {
            throw new CheckpointFormatException(
                $"No weights in '{directory}': expected '{SingleFileName}' or '{IndexFileName}'.", directory);
        }

        var weightMap = ReadWeightMap(index);
        var readers = new List<SafetensorsReader>();
        var readerByTensor = new Dictionary<string, SafetensorsReader>(StringComparer.Ordinal);
        try
        {
            foreach (var shard in weightMap.GroupBy(e => e.Value, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
            {
                string shardPath = Path.Combine(directory, shard.Key);
                if (!File.Exists(shardPath))
                {
                    throw new CheckpointFormatException(
                        $"Shard '{shard.Key}' listed in '{index}' (for tensor '{shard.First().Key}') does not exist: '{shardPath}'.",
                        index,
                        shard.First().Key);
                }

                var reader = new SafetensorsReader(shardPath);
                readers.Add(reader);
                foreach (var (name, _) in shard)
                {
                    if (!reader.Contains(name))
                    {
                        throw new CheckpointFormatException(
                            $"'{index}' maps tensor '{name}' to shard '{shardPath}', but that file has no such tensor.",
                            shardPath,
                            name);
                    }

                    readerByTensor[name] = reader;
                }
            }
        }
        catch
        {
            foreach (var reader in readers)
            {
                reader.Dispose();
            }

            throw;
        }

        return new Sources(index, readers, readerByTensor);
    }

    private static Dictionary<string, string> ReadWeightMap(string index)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllBytes(index));
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException($"Shard index '{index}' is not valid JSON: {ex.Message}", index, null, ex);
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("weight_map", out var map)
                || map.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException($"Shard index '{index}' has no 'weight_map' object.", index);
            }

            var result = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in map.EnumerateObject())
            {
                string? file = entry.Value.ValueKind == JsonValueKind.String ? entry.Value.GetString() : null;
                if (string.IsNullOrEmpty(file) || file != Path.GetFileName(file) || file is "." or "..")
                {
                    throw new CheckpointFormatException(
                        $"Shard index '{index}' maps tensor '{entry.Name}' to {entry.Value.GetRawText()}; expected the file name of a shard in the same folder.",
                        index,
                        entry.Name);
                }

                if (!result.TryAdd(entry.Name, file))
                {
                    throw new CheckpointFormatException($"Shard index '{index}' lists tensor '{entry.Name}' more than once.", index, entry.Name);
                }
            }

            return result;
        }
    }

    [GeneratedRegex(@"^model-\d{5}-of-\d{5}\.safetensors$", RegexOptions.CultureInvariant)]
    private static partial Regex ShardFileName();

    /// <summary>The readers of a folder's weight files and which reader holds each tensor.</summary>
    internal sealed record Sources(string DescriptorPath, List<SafetensorsReader> Readers, Dictionary<string, SafetensorsReader> ReaderByTensor);
}
