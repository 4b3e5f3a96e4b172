using System.Text.Json.Nodes;
using FineTuning.Core.Models;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// The <c>quantization_config</c> object of a Hugging Face <c>config.json</c> for bitsandbytes 4-bit models, as
/// Transformers' <c>BitsAndBytesConfig.to_dict()</c> writes it (keys sorted).
/// </summary>
internal static class BitsAndBytesConfigJson
{
    public const string Key = "quantization_config";

    /// <summary>The object for a model quantized with these settings; <paramref name="skipModules"/> null when only <c>lm_head</c> stays in full precision.</summary>
    public static JsonObject Create(QuantizationType type, bool doubleQuant, ScalarType computeDType, IReadOnlyList<string>? skipModules) => new()
    {
        ["_load_in_4bit"] = true,
        ["_load_in_8bit"] = false,
        ["bnb_4bit_compute_dtype"] = ModelConfig.DtypeName(computeDType),
        ["bnb_4bit_quant_storage"] = "uint8",
        ["bnb_4bit_quant_type"] = FourBitCodeTable.Name(type),
        ["bnb_4bit_use_double_quant"] = doubleQuant,
        ["llm_int8_enable_fp32_cpu_offload"] = false,
        ["llm_int8_has_fp16_weight"] = false,
        ["llm_int8_skip_modules"] = skipModules is null ? null : new JsonArray([.. skipModules.Select(m => (JsonNode?)m)]),
        ["llm_int8_threshold"] = JsonNode.Parse("6.0"),
        ["load_in_4bit"] = true,
        ["load_in_8bit"] = false,
        ["quant_method"] = "bitsandbytes",
    };

    /// <summary>
    /// Reads the settings (block size stays the default: Transformers' config has none, each tensor's quant_state
    /// carries its own).
    /// </summary>
    /// <exception cref="ModelConfigException">Not a bitsandbytes 4-bit config, or a field has an unsupported value.</exception>
    public static QuantizationOptions Parse(JsonObject config, string? path)
    {
        string? String(string name) => config[name] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            var other => throw new ModelConfigException($"{Key}.{name}", $"expected a string, got {other.ToJsonString()}", path),
        };

        bool? Bool(string name) => config[name] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out bool b) => b,
            var other => throw new ModelConfigException($"{Key}.{name}", $"expected true or false, got {other.ToJsonString()}", path),
        };

        var method = String("quant_method");
        if (method != "bitsandbytes")
        {
            throw new ModelConfigException($"{Key}.quant_method", $"unsupported quantization method '{method ?? "(missing)"}'; only bitsandbytes 4-bit checkpoints load", path);
        }

        if ((Bool("load_in_8bit") ?? Bool("_load_in_8bit")) == true)
        {
            throw new ModelConfigException($"{Key}.load_in_8bit", "8-bit bitsandbytes checkpoints are not supported; only 4-bit (load_in_4bit) ones", path);
        }

        if ((Bool("load_in_4bit") ?? Bool("_load_in_4bit")) != true)
        {
            throw new ModelConfigException($"{Key}.load_in_4bit", "must be true: only 4-bit bitsandbytes checkpoints are supported", path);
        }

        var storage = String("bnb_4bit_quant_storage") ?? "uint8";
        if (storage != "uint8")
        {
            throw new ModelConfigException($"{Key}.bnb_4bit_quant_storage", $"only uint8 storage is supported, got '{storage}'", path);
        }

        var typeName = String("bnb_4bit_quant_type") ?? "fp4";
        if (!FourBitCodeTable.TryParse(typeName, out var type))
        {
            throw new ModelConfigException($"{Key}.bnb_4bit_quant_type", $"unsupported 4-bit type '{typeName}'; expected nf4, fp4 or int4", path);
        }

        var computeName = String("bnb_4bit_compute_dtype") ?? "float32";
        ScalarType compute = computeName.Replace("torch.", "", StringComparison.Ordinal) switch
        {
            "float32" or "float" => ScalarType.Float32,
            "bfloat16" => ScalarType.BFloat16,
            "float16" or "half" => ScalarType.Float16,
            _ => throw new ModelConfigException($"{Key}.bnb_4bit_compute_dtype", $"unsupported dtype '{computeName}'; expected float32, bfloat16 or float16", path),
        };

        var skip = config["llm_int8_skip_modules"] switch
        {
            null => [],
            JsonArray array => array.Select((item, i) => item is JsonValue v && v.TryGetValue(out string? s) && s.Length > 0
                ? s
                : throw new ModelConfigException($"{Key}.llm_int8_skip_modules[{i}]", "expected a module name", path)).Where(s => s != "lm_head").ToArray(),
            var other => throw new ModelConfigException($"{Key}.llm_int8_skip_modules", $"expected a list or null, got {other.ToJsonString()}", path),
        };

        return new QuantizationOptions
        {
            Type = type,
            DoubleQuant = Bool("bnb_4bit_use_double_quant") ?? false,
            ComputeDType = compute,
            SkipModules = skip,
        };
    }
}
