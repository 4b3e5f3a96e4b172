using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// Reads and writes 4-bit model folders in the layout Transformers writes for bitsandbytes models (the
/// "-bnb-4bit" checkpoints): <c>config.json</c> with a <c>quantization_config</c>, and safetensors where each 4-bit
/// projection has <c>&lt;module&gt;.weight</c> (packed uint8 [(n + 1) / 2, 1]), <c>.weight.absmax</c>,
/// <c>.weight.quant_map</c>, with double quantization <c>.weight.nested_absmax</c> and
/// <c>.weight.nested_quant_map</c>, and <c>.weight.quant_state.bitsandbytes__nf4</c> (or <c>__fp4</c>): the UTF-8
/// JSON of the remaining fields as a uint8 tensor (bitsandbytes' <c>QuantState.as_dict(packed=True)</c>).
/// </summary>
/// <remarks>
/// <para>Loading builds the 4-bit layers from the stored bytes, without quantizing again, so a save → load round trip
/// is bit-exact. <see cref="HuggingFaceModel.Load"/> and <see cref="HuggingFaceModel.Save"/> come here for quantized
/// folders and models.</para>
/// <para>Int4 has no bitsandbytes equivalent: its state is stored under <c>.weight.quant_state.finetuning__int4</c>
/// with <c>"quant_type": "int4"</c>, which only this library reads (bitsandbytes rejects the key).</para>
/// </remarks>
public static class QuantizedModelFiles
{
    private const string QuantStateInfix = ".weight.quant_state.";

    /// <summary>Whether the folder's <c>config.json</c> has a <c>quantization_config</c>.</summary>
    /// <param name="directory">The model folder.</param>
    /// <returns><c>true</c> for a quantized checkpoint.</returns>
    public static bool IsQuantizedFolder(string directory) => ReadQuantizationConfigObject(Path.Combine(directory, HuggingFaceModel.ConfigFileName)) is not null;

    /// <summary>Whether the model holds 4-bit layers.</summary>
    /// <param name="model">The model.</param>
    /// <returns><c>true</c> when any module is a <see cref="Linear4Bit"/>.</returns>
    public static bool IsQuantized(CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.named_modules().Any(m => m.module is Linear4Bit);
    }

    /// <summary>The settings in a folder's <c>quantization_config</c> (the block size is per tensor in the files and stays the default here).</summary>
    /// <param name="directory">The model folder.</param>
    /// <returns>The settings, or <c>null</c> when the folder is not quantized.</returns>
    /// <exception cref="ModelConfigException">The config is not a bitsandbytes 4-bit one.</exception>
    public static QuantizationOptions? ReadQuantizationConfig(string directory)
    {
        var path = Path.Combine(directory, HuggingFaceModel.ConfigFileName);
        return ReadQuantizationConfigObject(path) is { } config ? BitsAndBytesConfigJson.Parse(config, path) : null;
    }

    /// <summary>
    /// Writes <c>config.json</c> (with <c>quantization_config</c>) and the weights, every file atomically: 4-bit layers
    /// in bitsandbytes' layout, everything else as <see cref="HuggingFaceWeights.Save"/> writes it.
    /// </summary>
    /// <param name="model">A model with 4-bit layers (all with the same type, double quantization and compute dtype).</param>
    /// <param name="directory">The folder (created if needed).</param>
    /// <param name="options">Sharding, metadata and the dtype of the tensors that are not quantized (quantization state is always stored as bitsandbytes stores it).</param>
    /// <returns>The files written.</returns>
    /// <exception cref="InvalidOperationException">The model has no 4-bit layer, or its 4-bit layers differ in settings.</exception>
    public static WeightSaveResult Save(CausalLanguageModel model, string directory, WeightSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        options ??= WeightSaveOptions.Default;
        var layers = model.named_modules().Where(m => m.module is Linear4Bit).Select(m => (m.name, Layer: (Linear4Bit)m.module)).ToList();
        if (layers.Count == 0)
        {
            throw new InvalidOperationException("The model has no 4-bit layer; save it with HuggingFaceModel.Save.");
        }

        var first = layers[0].Layer;
        if (layers.FirstOrDefault(l => l.Layer.Type != first.Type || l.Layer.IsDoubleQuantized != first.IsDoubleQuantized || l.Layer.ComputeDType != first.ComputeDType) is { Layer: not null } odd)
        {
            throw new InvalidOperationException($"'{odd.name}' is quantized differently from '{layers[0].name}' ({odd.Layer.Type}, double quant {odd.Layer.IsDoubleQuantized}, compute {odd.Layer.ComputeDType} vs {first.Type}, {first.IsDoubleQuantized}, {first.ComputeDType}); one quantization_config cannot describe both.");
        }

        var owned = new List<Tensor>();
        try
        {
            var states = layers.ToDictionary(l => l.name + ".weight", l => StateTensors(l.name, l.Layer.QuantState, owned), StringComparer.Ordinal);
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var (name, tensor) in HuggingFaceWeights.CollectTensors(model))
            {
                var stored = tensor;
                if (options.DType is { } dtype && is_floating_point(tensor) && tensor.dtype != dtype)
                {
                    stored = tensor.to(dtype);
                    owned.Add(stored);
                }

                tensors.Add(new(name, stored));
                if (states.TryGetValue(name, out var state))
                {
                    tensors.AddRange(state);
                }
            }

            var result = HuggingFaceWeights.SaveTensors(tensors, directory, options with { DType = null });
            var skipped = model.LinearSlots().Where(s => s.FullName != "lm_head" && !layers.Any(l => l.name == s.FullName)).Select(s => s.FullName).ToList();
            var config = JsonNode.Parse((model.Config with { TorchDtype = ModelConfig.DtypeName(options.DType ?? model.DType) }).ToJson())!.AsObject();
            config[BitsAndBytesConfigJson.Key] = BitsAndBytesConfigJson.Create(first.Type, first.IsDoubleQuantized, first.ComputeDType, skipped.Count == 0 ? null : skipped.Append("lm_head").ToArray());
            AtomicFile.WriteAllText(Path.Combine(directory, HuggingFaceModel.ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            return result;
        }
        finally
        {
            owned.ForEach(t => t.Dispose());
        }
    }

    /// <summary>
    /// Builds the model of a 4-bit folder: every projection with a <c>.weight.quant_state.*</c> entry becomes a
    /// <see cref="Linear4Bit"/> holding the stored codes and state (compute dtype from
    /// <c>bnb_4bit_compute_dtype</c>); the other tensors load as usual.
    /// </summary>
    /// <param name="directory">The model folder.</param>
    /// <param name="options">Device and dtype of the tensors that are not quantized.</param>
    /// <returns>The model, in evaluation mode.</returns>
    /// <exception cref="ModelConfigException">The config (or its <c>quantization_config</c>) is invalid or unsupported.</exception>
    /// <exception cref="CheckpointFormatException">A piece of a 4-bit weight is missing or inconsistent (the message names the tensor), or another load error.</exception>
    public static CausalLanguageModel Load(string directory, ModelLoadOptions? options = null)
    {
        options ??= new ModelLoadOptions();
        var configPath = Path.Combine(directory, HuggingFaceModel.ConfigFileName);
        var config = ModelConfig.Load(configPath);
        var quantization = ReadQuantizationConfigObject(configPath) is { } node
            ? BitsAndBytesConfigJson.Parse(node, configPath)
            : throw new ModelConfigException(BitsAndBytesConfigJson.Key, "missing: this is not a quantized checkpoint (load it with HuggingFaceModel.Load)", configPath);
        if (!HuggingFaceModel.HasWeights(directory))
        {
            throw new FileNotFoundException($"{directory} holds no model.safetensors or model.safetensors.index.json.", Path.Combine(directory, HuggingFaceWeights.SingleFileName));
        }

        // Projections start as meta placeholders: the 4-bit layers replace them without a full-precision copy ever
        // existing, and the ones the file keeps in 16 bits are built for real just before their weights are read.
        var device = options.Device ?? CPU;
        var model = CausalLanguageModel.CreateWithProjectionPlaceholders(config, device, options.DType);
        try
        {
            var stateKeys = new HashSet<string>(StringComparer.Ordinal);
            var sources = HuggingFaceWeights.OpenSources(Path.GetFullPath(directory));
            try
            {
                foreach (var (module, key, type) in FindQuantizedModules(sources))
                {
                    var slot = model.LinearSlots().FirstOrDefault(s => s.FullName == module)
                        ?? throw new CheckpointFormatException($"Tensor '{key}' describes a 4-bit weight of '{module}', which is not a projection of this {config.ModelType} model.", sources.ReaderByTensor[key].FilePath, key);
                    var linear = (Linear)slot.Module;
                    var layer = BuildLayer(new StateSource(sources, module, key, stateKeys), type, linear, device, quantization.ComputeDType);
                    layer.train(linear.training);
                    model.ReplaceModule(module, layer).Dispose();
                }
            }
            finally
            {
                foreach (var reader in sources.Readers)
                {
                    reader.Dispose();
                }
            }

            foreach (var slot in model.LinearSlots().Where(s => s.Module is Linear { weight.is_meta: true }).ToList())
            {
                var placeholder = (Linear)slot.Module;
                var real = nn.Linear(placeholder.in_features, placeholder.out_features, hasBias: placeholder.bias is not null, device: device, dtype: model.DType);
                real.train(placeholder.training);
                model.ReplaceModule(slot.FullName, real).Dispose();
            }

            HuggingFaceWeights.Load(model, directory, new WeightLoadOptions
            {
                IgnoredUnexpectedNames = config.TieWordEmbeddings ? ["lm_head.weight"] : [],
                IgnoreUnexpected = stateKeys.Contains,
            });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The suffix after <c>.weight.quant_state.</c> for a type: <c>bitsandbytes__nf4</c>, <c>bitsandbytes__fp4</c>, or this library's <c>finetuning__int4</c>.</summary>
    /// <param name="type">The data type.</param>
    /// <returns>The key suffix.</returns>
    public static string QuantStateKeySuffix(QuantizationType type) => type == QuantizationType.Int4 ? "finetuning__int4" : "bitsandbytes__" + FourBitCodeTable.Name(type);

    /// <summary>The packed JSON of a state's non-tensor fields, byte for byte as bitsandbytes' <c>pack_dict_to_tensor(json.dumps(...))</c>.</summary>
    internal static string QuantStateJson(QuantState state)
    {
        var members = new List<(string, string)>
        {
            ("quant_type", PythonJson.String(FourBitCodeTable.Name(state.Type))),
            ("blocksize", PythonJson.Integer(state.BlockSize)),
            ("dtype", PythonJson.String(ModelConfig.DtypeName(state.DType))),
            ("shape", PythonJson.IntegerList(state.Shape)),
        };
        if (state.Nested is { } nested)
        {
            members.Add(("nested_blocksize", PythonJson.Integer(nested.BlockSize)));
            members.Add(("nested_dtype", PythonJson.String("float32")));
            members.Add(("nested_offset", PythonJson.Float(state.Offset!.cpu().item<float>())));
        }

        return PythonJson.Object(members);
    }

    /// <summary>The state tensors of one module in bitsandbytes' order (absmax, quant_map, nested_absmax, nested_quant_map, quant_state.*).</summary>
    private static List<KeyValuePair<string, Tensor>> StateTensors(string module, QuantState state, List<Tensor> owned)
    {
        var prefix = module + ".weight.";
        var json = tensor(Encoding.UTF8.GetBytes(QuantStateJson(state)));
        owned.Add(json);
        var result = new List<KeyValuePair<string, Tensor>> { new(prefix + "absmax", state.Absmax), new(prefix + "quant_map", state.Code) };
        if (state.Nested is { } nested)
        {
            result.Add(new(prefix + "nested_absmax", nested.Absmax));
            result.Add(new(prefix + "nested_quant_map", nested.Code));
        }

        result.Add(new(prefix + "quant_state." + QuantStateKeySuffix(state.Type), json));
        return result;
    }

    private static IEnumerable<(string Module, string Key, QuantizationType Type)> FindQuantizedModules(HuggingFaceWeights.Sources sources)
    {
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var key in sources.ReaderByTensor.Keys.Order(StringComparer.Ordinal))
        {
            var at = key.IndexOf(QuantStateInfix, StringComparison.Ordinal);
            if (at < 0)
            {
                continue;
            }

            var module = key[..at];
            var suffix = key[(at + QuantStateInfix.Length)..];
            var type = Enum.GetValues<QuantizationType>().Cast<QuantizationType?>().FirstOrDefault(t => QuantStateKeySuffix(t!.Value) == suffix)
                ?? throw new CheckpointFormatException($"Tensor '{key}' has an unknown quant_state kind '{suffix}'; expected {string.Join(", ", Enum.GetValues<QuantizationType>().Select(QuantStateKeySuffix))}.", sources.ReaderByTensor[key].FilePath, key);
            if (!seen.TryAdd(module, key))
            {
                throw new CheckpointFormatException($"'{module}' has two quant_state entries, '{seen[module]}' and '{key}'; bitsandbytes allows exactly one.", sources.ReaderByTensor[key].FilePath, key);
            }

            yield return (module, key, type);
        }
    }

    private static Linear4Bit BuildLayer(StateSource source, QuantizationType type, Linear linear, Device device, ScalarType computeDType)
    {
        var outFeatures = linear.weight!.shape[0];
        var inFeatures = linear.weight!.shape[1];
        var n = outFeatures * inFeatures;
        var fields = source.ReadJson();

        var quantType = fields.String("quant_type");
        if (quantType != FourBitCodeTable.Name(type))
        {
            throw source.Error($"says quant_type '{quantType}', but its key is for {FourBitCodeTable.Name(type)}");
        }

        var blockSize = fields.Int("blocksize");
        if (!Blockwise4BitQuantizer.IsSupportedBlockSize(blockSize))
        {
            throw source.Error($"has blocksize {blockSize}; expected one of {string.Join(", ", Blockwise4BitQuantizer.SupportedBlockSizes)}");
        }

        var dtype = fields.DType("dtype");
        var shape = fields.IntList("shape");
        if (!shape.SequenceEqual([outFeatures, inFeatures]))
        {
            throw source.Error($"has shape [{string.Join(", ", shape)}], but '{source.Module}' is [{outFeatures}, {inFeatures}] in this model");
        }

        var blocks = (n + blockSize - 1) / blockSize;
        var nested = fields.Has("nested_offset") || source.Has("nested_absmax");
        source.Check("weight", ScalarType.Byte, [(n + 1) / 2, 1]);
        var absmax = source.Read("absmax", nested ? ScalarType.Byte : ScalarType.Float32, [blocks], device);
        var code = source.Read("quant_map", ScalarType.Float32, [16], device);
        NestedQuantState? second = null;
        Tensor? offset = null;
        if (nested)
        {
            var nestedBlockSize = fields.Int("nested_blocksize");
            if (nestedBlockSize < 1)
            {
                throw source.Error($"has nested_blocksize {nestedBlockSize}; expected a positive block size (bitsandbytes uses 256)");
            }

            if (fields.Has("nested_dtype") && fields.String("nested_dtype") != "float32")
            {
                throw source.Error($"has nested_dtype '{fields.String("nested_dtype")}'; expected float32");
            }

            offset = tensor(fields.Float("nested_offset"), device: device);
            second = new NestedQuantState(
                source.Read("nested_absmax", ScalarType.Float32, [(blocks + nestedBlockSize - 1) / nestedBlockSize], device),
                source.Read("nested_quant_map", ScalarType.Float32, [256], device),
                nestedBlockSize);
        }

        var state = new QuantState(absmax, code, [outFeatures, inFeatures], dtype, blockSize, type, offset, second);
        var packed = empty([(n + 1) / 2, 1], ScalarType.Byte, device);
        // The bias (read later with the other 16-bit tensors) must exist on the real device, not as a placeholder.
        using var bias = linear.bias is null ? null : zeros(linear.bias.shape, linear.bias.dtype, device);
        return new Linear4Bit(new BlockwiseQuantized4Bit(packed, state), bias, computeDType, linear.bias?.requires_grad ?? false);
    }

    private static JsonObject? ReadQuantizationConfigObject(string configPath)
    {
        if (!File.Exists(configPath))
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(File.ReadAllText(configPath)) is JsonObject root && root[BitsAndBytesConfigJson.Key] is JsonObject config ? config : null;
        }
        catch (JsonException e)
        {
            throw new ModelConfigException("(root)", $"not valid JSON: {e.Message}", configPath);
        }
    }

    /// <summary>Reads and checks the state tensors of one 4-bit module; every error names the tensor.</summary>
    private sealed class StateSource(HuggingFaceWeights.Sources sources, string module, string stateKey, HashSet<string> stateKeys)
    {
        public string Module => module;

        public bool Has(string field) => sources.ReaderByTensor.ContainsKey(Name(field));

        public QuantStateFields ReadJson()
        {
            stateKeys.Add(stateKey);
            var reader = sources.ReaderByTensor[stateKey];
            if (reader.GetInfo(stateKey).ScalarType != ScalarType.Byte)
            {
                throw Error($"is {reader.GetInfo(stateKey).ScalarType}; expected uint8 bytes of UTF-8 JSON");
            }

            using var bytes = reader.ReadTensor(stateKey);
            try
            {
                return JsonNode.Parse(Encoding.UTF8.GetString(bytes.data<byte>().ToArray())) is JsonObject obj
                    ? new QuantStateFields(obj, this)
                    : throw Error("is not a JSON object");
            }
            catch (JsonException e)
            {
                throw new CheckpointFormatException($"Tensor '{stateKey}' in '{reader.FilePath}' is not valid JSON: {e.Message}", reader.FilePath, stateKey, e);
            }
        }

        public SafetensorsTensorInfo Check(string field, ScalarType dtype, long[] shape)
        {
            var name = Name(field);
            if (field != "weight")
            {
                stateKeys.Add(name);
            }

            if (!sources.ReaderByTensor.TryGetValue(name, out var reader))
            {
                throw new CheckpointFormatException($"Tensor '{name}' is missing from the checkpoint in '{sources.DescriptorPath}': the 4-bit weight of '{module}' ('{stateKey}') needs it.", sources.DescriptorPath, name);
            }

            var info = reader.GetInfo(name);
            if (info.ScalarType != dtype || !info.Shape.SequenceEqual(shape))
            {
                throw new CheckpointFormatException($"Tensor '{name}' in '{reader.FilePath}' is {info.ScalarType} {info.ShapeText}; the 4-bit weight of '{module}' needs {dtype} {SafetensorsTensorInfo.FormatShape(shape)}.", reader.FilePath, name);
            }

            return info;
        }

        public Tensor Read(string field, ScalarType dtype, long[] shape, Device device)
        {
            Check(field, dtype, shape);
            return sources.ReaderByTensor[Name(field)].ReadTensor(Name(field), device);
        }

        /// <summary>The tensor name of a piece: <c>weight</c> is the packed codes themselves, the rest hang below it.</summary>
        private string Name(string field) => field == "weight" ? $"{module}.weight" : $"{module}.weight.{field}";

        public CheckpointFormatException Error(string problem)
        {
            var path = sources.ReaderByTensor[stateKey].FilePath;
            return new CheckpointFormatException($"Tensor '{stateKey}' in '{path}' {problem}.", path, stateKey);
        }
    }

    /// <summary>Typed access to the quant_state JSON; a missing or mistyped field is an error naming the tensor.</summary>
    private sealed class QuantStateFields(JsonObject obj, StateSource source)
    {
        public bool Has(string name) => obj.ContainsKey(name);

        public string String(string name) => Get(name) is JsonValue v && v.TryGetValue(out string? s) ? s : throw WrongType(name, "a string");

        public int Int(string name) => Get(name) is JsonValue v && v.TryGetValue(out int i) ? i : throw WrongType(name, "an integer");

        public float Float(string name) => Get(name) is JsonValue v && v.TryGetValue(out double d) ? (float)d : throw WrongType(name, "a number");

        public long[] IntList(string name) => Get(name) is JsonArray array && array.All(item => item is JsonValue v && v.TryGetValue(out long _))
            ? [.. array.Select(item => item!.GetValue<long>())]
            : throw WrongType(name, "a list of integers");

        public ScalarType DType(string name) => String(name) switch
        {
            "float32" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" => ScalarType.Float16,
            var other => throw source.Error($"has {name} '{other}'; expected float32, bfloat16 or float16"),
        };

        private JsonNode Get(string name) => obj[name] ?? throw source.Error($"has no '{name}' field");

        private CheckpointFormatException WrongType(string name, string expected) => source.Error($"has {name} {obj[name]?.ToJsonString()}; expected {expected}");
    }
}
