using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// An OPD (Optimal Parameter Decoupling) task delta: sparse changes to base tensors, tied to the exact base by a
/// SHA-256 hash. It can be written into a plain model and removed again bit for bit, and deltas whose supports are
/// disjoint compose exactly. The folder format (version 1) is documented in docs/methods.md:
/// <c>opd_config.json</c> (format, version, base hash, per-tensor shape, dtype, base hash and count) and
/// <c>opd_delta.safetensors</c> (<c>NAME.indices</c> I64, <c>NAME.values</c> F32 and optionally <c>NAME.anchor</c> F32).
/// </summary>
public sealed class SparseDelta
{
    /// <summary>The JSON file.</summary>
    public const string ConfigFileName = "opd_config.json";

    /// <summary>The tensor file.</summary>
    public const string WeightsFileName = "opd_delta.safetensors";

    /// <summary>The <c>format</c> value of both files.</summary>
    public const string FormatName = "finetuning-core.opd-delta";

    /// <summary>The format version this library writes and reads.</summary>
    public const int FormatVersion = 1;

    /// <summary>Creates a delta.</summary>
    /// <param name="baseModelHash">The hash of the base model (<see cref="HashModel"/>).</param>
    /// <param name="tensors">The changed tensors; names must be unique.</param>
    public SparseDelta(string baseModelHash, IReadOnlyList<SparseDeltaTensor> tensors)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        BaseModelHash = baseModelHash ?? throw new ArgumentNullException(nameof(baseModelHash));
        if (tensors.Select(t => t.Name).Distinct(StringComparer.Ordinal).Count() != tensors.Count)
        {
            throw new ArgumentException("A tensor appears twice.", nameof(tensors));
        }

        Tensors = tensors;
    }

    /// <summary>The hash of the base model the delta was trained on.</summary>
    public string BaseModelHash { get; }

    /// <summary>The changed tensors.</summary>
    public IReadOnlyList<SparseDeltaTensor> Tensors { get; }

    /// <summary>The number of changed entries.</summary>
    public long Count => Tensors.Sum(t => (long)t.Indices.Count);

    /// <summary>
    /// SHA-256 of a tensor: its dtype name, shape and little-endian bytes (<c>sha256:</c> + hex).
    /// </summary>
    /// <param name="tensor">The tensor.</param>
    /// <returns>The hash.</returns>
    public static string HashTensor(Tensor tensor)
    {
        ArgumentNullException.ThrowIfNull(tensor);
        using var scope = NewDisposeScope();
        var cpu = tensor.detach().cpu().contiguous();
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        sha.AppendData(Encoding.UTF8.GetBytes($"{SafetensorsDType.GetName(cpu.dtype)}[{string.Join(",", cpu.shape)}]\n"));
        sha.AppendData(cpu.bytes);
        return "sha256:" + Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// SHA-256 of a model's base parameters: over every parameter's name and <see cref="HashTensor"/>, sorted by name.
    /// Names are read as the base has them: an OPD wrapper's <c>.base_layer</c> is dropped and its deltas are skipped.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <returns>The hash.</returns>
    public static string HashModel(CausalLanguageModel model) => HashTensors(BaseTensorHashes(model));

    /// <summary>Applies the delta in place (base + δ, rounded to the base dtype) after checking the base hash, and returns the handle that removes it.</summary>
    /// <param name="model">A model with the base's parameters (plain, or with other changes when <paramref name="verifyBase"/> is false).</param>
    /// <param name="verifyBase">Refuse a model whose hash differs from <see cref="BaseModelHash"/>; turn off only to stack deltas one after another.</param>
    /// <param name="source">The file named in errors.</param>
    /// <returns>The applied delta.</returns>
    /// <exception cref="CheckpointFormatException">The model is not the delta's base, or lacks a tensor or has another shape.</exception>
    public AppliedSparseDelta ApplyTo(CausalLanguageModel model, bool verifyBase = true, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var file = source ?? ConfigFileName;
        var parameters = BaseParameters(model).ToDictionary(p => p.Name, p => p.Parameter, StringComparer.Ordinal);
        if (verifyBase)
        {
            VerifyBase(parameters.ToDictionary(p => p.Key, p => HashTensor(p.Value), StringComparer.Ordinal), file);
        }

        var saved = new List<(Tensor, Tensor, Tensor)>();
        using (no_grad())
        {
            foreach (var t in Tensors)
            {
                var parameter = parameters.TryGetValue(t.Name, out var p) ? p
                    : throw new CheckpointFormatException($"{file}: the model has no tensor '{t.Name}'.", file, t.Name);
                if (!parameter.shape.SequenceEqual(t.Shape))
                {
                    throw new CheckpointFormatException($"{file}: tensor '{t.Name}' has shape [{string.Join(", ", parameter.shape)}] in the model, expected [{string.Join(", ", t.Shape)}].", file, t.Name);
                }

                var indices = tensor(t.Indices.ToArray(), ScalarType.Int64, parameter.device);
                var flat = parameter.view(-1);
                var originals = flat.index_select(0, indices);
                using var values = tensor(t.Values.ToArray(), ScalarType.Float32, parameter.device);
                using var updated = (originals.to(ScalarType.Float32) + values).to(parameter.dtype);
                flat.index_copy_(0, indices, updated);
                saved.Add((parameter, indices, originals));
            }
        }

        return new AppliedSparseDelta(this, saved);
    }

    /// <summary>
    /// One delta holding several task deltas trained on the same base. Their supports must be disjoint (then applying
    /// the result equals applying each in any order); otherwise this throws naming the first shared entry.
    /// </summary>
    /// <param name="deltas">The deltas.</param>
    /// <returns>The composed delta.</returns>
    /// <exception cref="InvalidOperationException">The deltas have different bases or overlapping supports.</exception>
    public static SparseDelta Compose(IReadOnlyList<SparseDelta> deltas)
    {
        ArgumentNullException.ThrowIfNull(deltas);
        if (deltas.Count == 0)
        {
            throw new ArgumentException("No delta to compose.", nameof(deltas));
        }

        if (deltas.Select(d => d.BaseModelHash).Distinct(StringComparer.Ordinal).Count() > 1)
        {
            throw new InvalidOperationException("The deltas were trained on different base models (their base hashes differ).");
        }

        var merged = new List<SparseDeltaTensor>();
        foreach (var group in deltas.SelectMany(d => d.Tensors).GroupBy(t => t.Name, StringComparer.Ordinal))
        {
            var parts = group.ToList();
            var entries = parts.SelectMany(p => p.Indices.Select((index, k) => (Index: index, Value: p.Values[k], Anchor: p.Anchor?[k]))).OrderBy(e => e.Index).ToList();
            for (var k = 1; k < entries.Count; k++)
            {
                if (entries[k].Index == entries[k - 1].Index)
                {
                    throw new InvalidOperationException($"The deltas overlap at entry {entries[k].Index} of '{group.Key}'; only deltas with disjoint supports compose exactly.");
                }
            }

            var first = parts[0];
            merged.Add(first with
            {
                Indices = entries.Select(e => e.Index).ToArray(),
                Values = entries.Select(e => e.Value).ToArray(),
                Anchor = parts.All(p => p.Anchor is not null) ? entries.Select(e => e.Anchor!.Value).ToArray() : null,
            });
        }

        return new SparseDelta(deltas[0].BaseModelHash, merged);
    }

    /// <summary>Writes <c>opd_config.json</c> and <c>opd_delta.safetensors</c> atomically.</summary>
    /// <param name="directory">The folder; created when missing.</param>
    /// <param name="options">An object stored under <c>options</c> in the JSON (the method's settings), or <c>null</c>.</param>
    public void Write(string directory, JsonObject? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        Directory.CreateDirectory(directory);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        try
        {
            foreach (var t in Tensors)
            {
                tensors.Add(new(t.Name + ".indices", tensor(t.Indices.ToArray(), ScalarType.Int64)));
                tensors.Add(new(t.Name + ".values", tensor(t.Values.ToArray(), ScalarType.Float32)));
                if (t.Anchor is { } anchor)
                {
                    tensors.Add(new(t.Name + ".anchor", tensor(anchor.ToArray(), ScalarType.Float32)));
                }
            }

            SafetensorsWriter.Write(Path.Combine(directory, WeightsFileName), tensors, new Dictionary<string, string>
            {
                ["format"] = "pt",
                ["opd_format"] = FormatName,
                ["opd_format_version"] = FormatVersion.ToString(CultureInfo.InvariantCulture),
            });
        }
        finally
        {
            foreach (var t in tensors)
            {
                t.Value.Dispose();
            }
        }

        var config = new JsonObject
        {
            ["format"] = FormatName,
            ["format_version"] = FormatVersion,
            ["method"] = "opd",
            ["method_name"] = OpdStrategy.FullName,
            ["base_model_hash"] = BaseModelHash,
            ["count"] = Count,
            ["tensors"] = new JsonArray(Tensors.Select(t => (JsonNode)new JsonObject
            {
                ["name"] = t.Name,
                ["shape"] = new JsonArray(t.Shape.Select(s => (JsonNode)s).ToArray()),
                ["dtype"] = t.DType,
                ["base_tensor_hash"] = t.BaseTensorHash,
                ["count"] = t.Indices.Count,
            }).ToArray()),
        };
        if (options is not null)
        {
            config["options"] = options;
        }

        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), config.ToJsonString(OpdReport.JsonOptions) + "\n");
    }

    /// <summary>Whether a folder holds an OPD delta (an <c>opd_config.json</c>).</summary>
    /// <param name="directory">The folder.</param>
    /// <returns><c>true</c> when it does.</returns>
    public static bool IsDeltaFolder(string directory) => File.Exists(Path.Combine(directory, ConfigFileName));

    /// <summary>Reads a delta folder written by <see cref="Write"/>.</summary>
    /// <param name="directory">The folder.</param>
    /// <returns>The delta.</returns>
    /// <exception cref="FileNotFoundException">A file is missing.</exception>
    /// <exception cref="CheckpointFormatException">A file is malformed: names the file, the field or tensor, and what was expected.</exception>
    public static SparseDelta Read(string directory)
    {
        var configPath = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(configPath))
        {
            throw new FileNotFoundException($"'{directory}' holds no {ConfigFileName}; is it an OPD delta folder?", configPath);
        }

        var config = ReadConfig(configPath);
        var weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            throw new FileNotFoundException($"'{directory}' holds {ConfigFileName} but no {WeightsFileName}.", weightsPath);
        }

        using var reader = new SafetensorsReader(weightsPath);
        var tensors = new List<SparseDeltaTensor>();
        foreach (var entry in Field<JsonArray>(config, "tensors", configPath))
        {
            var item = entry as JsonObject ?? throw new CheckpointFormatException($"{configPath}: every entry of \"tensors\" must be an object.", configPath);
            var name = Field<string>(item, "name", configPath);
            var shape = Field<JsonArray>(item, "shape", configPath).Select(s => s?.GetValue<long>() ?? throw new CheckpointFormatException($"{configPath}: tensor '{name}' has a null dimension.", configPath, name)).ToArray();
            var count = Field<long>(item, "count", configPath);
            var indices = ReadVector<long>(reader, name + ".indices", ScalarType.Int64, count, weightsPath);
            var values = ReadVector<float>(reader, name + ".values", ScalarType.Float32, count, weightsPath);
            var anchor = reader.Contains(name + ".anchor") ? ReadVector<float>(reader, name + ".anchor", ScalarType.Float32, count, weightsPath) : null;
            var size = shape.Aggregate(1L, (a, b) => a * b);
            for (var k = 0; k < indices.Length; k++)
            {
                if (indices[k] < 0 || indices[k] >= size || (k > 0 && indices[k] <= indices[k - 1]))
                {
                    throw new CheckpointFormatException($"{weightsPath}: '{name}.indices' must be strictly increasing in [0, {size}); entry {k} is {indices[k]}.", weightsPath, name + ".indices");
                }
            }

            tensors.Add(new SparseDeltaTensor(name, shape, Field<string>(item, "dtype", configPath), Field<string>(item, "base_tensor_hash", configPath), indices, values) { Anchor = anchor });
        }

        return new SparseDelta(Field<string>(config, "base_model_hash", configPath), tensors);
    }

    /// <summary>Reads and checks <c>opd_config.json</c> (format and version).</summary>
    internal static JsonObject ReadConfig(string path)
    {
        JsonObject config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new CheckpointFormatException($"{path} must hold a JSON object.", path);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path} is not valid JSON: {e.Message}", path, null, e);
        }

        if (Field<string>(config, "format", path) != FormatName)
        {
            throw new CheckpointFormatException($"{path}: \"format\" must be \"{FormatName}\".", path);
        }

        var version = Field<int>(config, "format_version", path);
        if (version != FormatVersion)
        {
            throw new CheckpointFormatException($"{path}: format_version {version} is not supported (expected {FormatVersion}).", path);
        }

        return config;
    }

    /// <summary>Per base tensor (named as in the base), its hash.</summary>
    internal static Dictionary<string, string> BaseTensorHashes(CausalLanguageModel model) =>
        BaseParameters(model).ToDictionary(p => p.Name, p => HashTensor(p.Parameter), StringComparer.Ordinal);

    internal static string HashTensors(IReadOnlyDictionary<string, string> hashes)
    {
        var text = new StringBuilder();
        foreach (var (name, hash) in hashes.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            text.Append(name).Append('=').Append(hash).Append('\n');
        }

        return "sha256:" + Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()))).ToLowerInvariant();
    }

    /// <summary>Refuses a base whose hash differs, naming the first changed tensor of the delta's support when there is one.</summary>
    internal void VerifyBase(IReadOnlyDictionary<string, string> hashes, string file)
    {
        var actual = HashTensors(hashes);
        if (actual == BaseModelHash)
        {
            return;
        }

        foreach (var t in Tensors)
        {
            var found = hashes.TryGetValue(t.Name, out var h) ? h : "(missing)";
            if (found != t.BaseTensorHash)
            {
                throw new CheckpointFormatException($"{file}: the model is not this delta's base: tensor '{t.Name}' has hash {found}, expected {t.BaseTensorHash} (base model hash {actual}, expected {BaseModelHash}).", file, t.Name);
            }
        }

        throw new CheckpointFormatException($"{file}: the model is not this delta's base: base model hash {actual}, expected {BaseModelHash} (a tensor outside the delta's support differs).", file);
    }

    private static IEnumerable<(string Name, Tensor Parameter)> BaseParameters(CausalLanguageModel model) =>
        model.named_parameters()
            .Where(p => !p.name[(p.name.LastIndexOf('.') + 1)..].StartsWith("opd_", StringComparison.Ordinal))
            .Select(p => (p.name.Replace(".base_layer.", ".", StringComparison.Ordinal), (Tensor)p.parameter));

    private static T[] ReadVector<T>(SafetensorsReader reader, string name, ScalarType dtype, long count, string file)
        where T : unmanaged
    {
        if (!reader.Contains(name))
        {
            throw new CheckpointFormatException($"{file} has no tensor '{name}'.", file, name);
        }

        var info = reader.GetInfo(name);
        if (info.ScalarType != dtype || info.Shape.Count != 1 || info.Shape[0] != count)
        {
            throw new CheckpointFormatException($"{file}: '{name}' must be a {SafetensorsDType.GetName(dtype)} vector of {count} entries, got {SafetensorsDType.GetName(info.ScalarType)} [{string.Join(", ", info.Shape)}].", file, name);
        }

        using var t = reader.ReadTensor(name);
        return t.data<T>().ToArray();
    }

    private static T Field<T>(JsonObject node, string key, string file)
    {
        try
        {
            return node[key] switch
            {
                null => throw new CheckpointFormatException($"{file}: missing field \"{key}\".", file),
                JsonArray array when typeof(T) == typeof(JsonArray) => (T)(object)array,
                JsonArray => throw new FormatException(),
                var value => value.GetValue<T>(),
            };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new CheckpointFormatException($"{file}: field \"{key}\" must be a {typeof(T).Name}.", file, null, e);
        }
    }
}
