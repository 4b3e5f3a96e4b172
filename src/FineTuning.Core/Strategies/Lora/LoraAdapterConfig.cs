using System.Globalization;
using System.Text.Json;
using FineTuning.Core.IO;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// Reads and writes PEFT's <c>adapter_config.json</c> for LoRA (<c>LoraConfig</c>), mapped to and from
/// <see cref="LoraOptions"/>.
/// </summary>
/// <remarks>
/// <para>Writing follows <c>json.dumps(config.to_dict(), indent=2, sort_keys=True)</c>: every <c>LoraConfig</c>
/// field PEFT writes (features this library lacks at their defaults), <c>peft_type</c> <c>"LORA"</c>,
/// <c>task_type</c> <c>"CAUSAL_LM"</c> and <c>inference_mode</c> <c>true</c>, ASCII-only, with no trailing newline.
/// <c>peft_version</c> is not written, since no PEFT version produced the file.</para>
/// <para>Reading ignores unknown keys with one logged warning each (as newer PEFT does), ignores known keys this
/// library has no use for when they hold their defaults, and refuses (with <see cref="NotSupportedException"/>)
/// features it cannot reproduce, such as <c>fan_in_fan_out</c>, <c>lora_bias</c>, <c>layer_replication</c> or a
/// LoftQ/OLoRA/CorDA init.</para>
/// </remarks>
public static class LoraAdapterConfig
{
    /// <summary>The file name.</summary>
    public const string FileName = "adapter_config.json";

    private const string PissaNiterPrefix = "pissa_niter_";

    /// <summary>Keys ignored whatever their value (bookkeeping).</summary>
    private static readonly HashSet<string> Bookkeeping = new(StringComparer.Ordinal)
    {
        "auto_mapping", "inference_mode", "peft_version", "revision", "megatron_core", "qalora_group_size", "runtime_config",
    };

    /// <summary>Keys of features this library lacks, with the values that mean "off" (null, false, {} or []).</summary>
    private static readonly string[] UnsupportedFeatures =
    [
        "alora_invocation_tokens", "arrow_config", "corda_config", "ensure_weight_tying", "eva_config", "fan_in_fan_out",
        "kasa_config", "layer_replication", "loftq_config", "lora_bias", "lora_ga_config", "megatron_config",
        "monteclora_config", "target_parameters", "trainable_token_indices", "use_bdlora", "use_qalora", "velora_config",
    ];

    /// <summary>Writes <c>adapter_config.json</c> into a folder, atomically.</summary>
    /// <param name="directory">The adapter folder (created when missing).</param>
    /// <param name="options">The adapter's options, with resolved <see cref="LoraOptions.TargetModules"/>.</param>
    public static void Write(string directory, LoraOptions options)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, FileName), ToJson(options));
    }

    /// <summary>The file's text for an adapter.</summary>
    /// <param name="options">The adapter's options (<c>null</c> targets are written as <c>null</c>; the strategy resolves them first).</param>
    /// <returns>The JSON text.</returns>
    public static string ToJson(LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var fields = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["alpha_pattern"] = options.AlphaPattern.ToDictionary(p => p.Key, p => (object?)AlphaValue(p.Value)),
            ["base_model_name_or_path"] = options.BaseModelNameOrPath,
            ["bias"] = BiasName(options.Bias),
            ["exclude_modules"] = Targets(options.ExcludeModules),
            ["inference_mode"] = true,
            ["init_lora_weights"] = InitValue(options),
            ["layers_pattern"] = null,
            ["layers_to_transform"] = options.LayersToTransform?.ToArray(),
            ["lora_alpha"] = AlphaValue(options.Alpha),
            ["lora_dropout"] = options.Dropout,
            ["megatron_core"] = "megatron.core",
            ["modules_to_save"] = options.ModulesToSave?.ToArray(),
            ["peft_type"] = "LORA",
            ["qalora_group_size"] = 16,
            ["r"] = options.R,
            ["rank_pattern"] = options.RankPattern.ToDictionary(p => p.Key, p => (object?)p.Value),
            ["revision"] = null,
            ["target_modules"] = Targets(options.TargetModules),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = options.UseDora,
            ["use_rslora"] = options.UseRsLora,
        };
        foreach (var key in UnsupportedFeatures)
        {
            fields[key] = key switch
            {
                "loftq_config" => new Dictionary<string, object?>(),
                "ensure_weight_tying" or "fan_in_fan_out" or "lora_bias" or "use_qalora" => false,
                _ => null,
            };
        }

        fields["auto_mapping"] = null;
        return PythonJson.Indented(fields);
    }

    /// <summary>Reads <c>adapter_config.json</c> from an adapter folder.</summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="logger">Receives a warning per ignored key; none when <c>null</c>.</param>
    /// <returns>The options.</returns>
    /// <exception cref="FileNotFoundException">The folder has no adapter_config.json.</exception>
    /// <exception cref="CheckpointFormatException">The file is not valid JSON or a value has the wrong type.</exception>
    /// <exception cref="NotSupportedException">The file uses a PEFT feature this library cannot reproduce.</exception>
    public static LoraOptions Read(string directory, ILogger? logger = null)
    {
        var path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{directory}' holds no {FileName}; is it a PEFT adapter folder?", path);
        }

        return Parse(File.ReadAllText(path), path, logger);
    }

    /// <summary>Parses the file's text.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourcePath">The file, for messages.</param>
    /// <param name="logger">Receives a warning per ignored key; none when <c>null</c>.</param>
    /// <returns>The options.</returns>
    /// <exception cref="CheckpointFormatException">The text is not valid JSON or a value has the wrong type.</exception>
    /// <exception cref="NotSupportedException">The file uses a PEFT feature this library cannot reproduce.</exception>
    public static LoraOptions Parse(string json, string? sourcePath = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        logger ??= NullLogger.Instance;
        var file = sourcePath ?? FileName;
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json);
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException($"{file} is not valid JSON: {ex.Message}", file, null, ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException($"{file} must hold a JSON object, got a {root.ValueKind}.", file);
            }

            var reader = new FieldReader(root, file);
            var peftType = reader.String("peft_type");
            if (peftType is not null && peftType != "LORA")
            {
                throw new NotSupportedException($"{file} describes a {peftType} adapter; only LORA adapters are read here.");
            }

            var taskType = reader.String("task_type");
            if (taskType is not null and not "CAUSAL_LM")
            {
                logger.LogWarning("{File}: task_type is {TaskType}, read as CAUSAL_LM.", file, taskType);
            }

            var (init, niter) = ReadInit(reader, file, logger);
            var options = new LoraOptions
            {
                R = reader.Int("r") ?? LoraOptions.Default.R,
                Alpha = reader.Double("lora_alpha") ?? LoraOptions.Default.Alpha,
                Dropout = reader.Double("lora_dropout") ?? 0,
                TargetModules = reader.Targets("target_modules"),
                ExcludeModules = reader.Targets("exclude_modules"),
                LayersToTransform = reader.IntOrList("layers_to_transform"),
                RankPattern = reader.Pattern<int>("rank_pattern", e => e.TryGetInt32(out var r) ? r : null),
                AlphaPattern = reader.Pattern<double>("alpha_pattern", e => e.TryGetDouble(out var a) ? a : null),
                Bias = ParseBias(reader.String("bias") ?? "none", file),
                ModulesToSave = reader.StringList("modules_to_save"),
                UseRsLora = reader.Bool("use_rslora") ?? false,
                UseDora = reader.Bool("use_dora") ?? false,
                Init = init,
                PissaNiter = niter,
                BaseModelNameOrPath = reader.String("base_model_name_or_path"),
            };
            CheckLayersPattern(root, file);
            foreach (var property in root.EnumerateObject())
            {
                if (Array.IndexOf(UnsupportedFeatures, property.Name) >= 0)
                {
                    if (!IsOff(property.Value))
                    {
                        throw new NotSupportedException($"{file} sets {property.Name} = {property.Value.GetRawText()}, which this library does not support.");
                    }
                }
                else if (!reader.Used.Contains(property.Name) && !Bookkeeping.Contains(property.Name) && property.Name != "layers_pattern")
                {
                    logger.LogWarning("{File}: ignoring unknown key '{Key}'.", file, property.Name);
                }
            }

            try
            {
                options.Validate();
            }
            catch (InvalidOptionException ex)
            {
                throw new CheckpointFormatException($"{file}: {ex.Message}", file, null, ex);
            }

            return options;
        }
    }

    /// <summary>PEFT's spelling of a bias mode.</summary>
    /// <param name="bias">The mode.</param>
    /// <returns><c>none</c>, <c>all</c> or <c>lora_only</c>.</returns>
    public static string BiasName(LoraBias bias) => bias switch
    {
        LoraBias.None => "none",
        LoraBias.All => "all",
        LoraBias.LoraOnly => "lora_only",
        _ => throw new ArgumentOutOfRangeException(nameof(bias), bias, null),
    };

    private static LoraBias ParseBias(string value, string file) => value switch
    {
        "none" => LoraBias.None,
        "all" => LoraBias.All,
        "lora_only" => LoraBias.LoraOnly,
        _ => throw new CheckpointFormatException($"{file}: bias must be \"none\", \"all\" or \"lora_only\", got \"{value}\".", file),
    };

    private static object InitValue(LoraOptions options) => options.Init switch
    {
        LoraInit.Default => true,
        LoraInit.Random => false,
        LoraInit.Gaussian => "gaussian",
        LoraInit.Pissa => options.PissaNiter is { } n ? PissaNiterPrefix + n.ToString(CultureInfo.InvariantCulture) : "pissa",
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Init, null),
    };

    private static (LoraInit Init, int? Niter) ReadInit(FieldReader reader, string file, ILogger logger)
    {
        var element = reader.Get("init_lora_weights");
        switch (element?.ValueKind)
        {
            case null or JsonValueKind.Null or JsonValueKind.True:
                return (LoraInit.Default, null);
            case JsonValueKind.False:
                return (LoraInit.Random, null);
            case JsonValueKind.String:
                var value = element.Value.GetString()!;
                if (value == "gaussian")
                {
                    return (LoraInit.Gaussian, null);
                }

                if (value == "pissa")
                {
                    return (LoraInit.Pissa, null);
                }

                if (value.StartsWith(PissaNiterPrefix, StringComparison.Ordinal)
                    && int.TryParse(value.AsSpan(PissaNiterPrefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var niter))
                {
                    return (LoraInit.Pissa, niter);
                }

                if (value is "eva" or "orthogonal")
                {
                    // These inits leave the base weight alone, so trained weights loaded over them give the same model.
                    logger.LogWarning("{File}: init_lora_weights \"{Init}\" is not implemented; the default init is used (loaded weights replace it).", file, value);
                    return (LoraInit.Default, null);
                }

                throw new NotSupportedException($"{file} sets init_lora_weights = \"{value}\", which this library does not support (it changes the base weights in a way that cannot be reproduced here).");
            default:
                throw new CheckpointFormatException($"{file}: init_lora_weights must be true, false or a string, got {element.Value.GetRawText()}.", file);
        }
    }

    /// <summary>Only the pattern PEFT would infer for this library's names (<c>layers</c>) is accepted.</summary>
    private static void CheckLayersPattern(JsonElement root, string file)
    {
        if (!root.TryGetProperty("layers_pattern", out var pattern) || IsOff(pattern))
        {
            return;
        }

        var ok = pattern.ValueKind switch
        {
            JsonValueKind.String => pattern.GetString() == "layers",
            JsonValueKind.Array => pattern.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String && e.GetString() == "layers"),
            _ => false,
        };
        if (!ok)
        {
            throw new NotSupportedException($"{file} sets layers_pattern = {pattern.GetRawText()}; this model's decoder layers are named 'layers'.");
        }
    }

    private static bool IsOff(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.Null or JsonValueKind.False => true,
        JsonValueKind.Object => !value.EnumerateObject().Any(),
        JsonValueKind.Array => value.GetArrayLength() == 0,
        _ => false,
    };

    private static object? Targets(LoraTargetModules? targets) => targets switch
    {
        null => null,
        { IsAllLinear: true } => LoraTargetModules.AllLinearShorthand,
        { Pattern: { } pattern } => pattern,
        _ => targets.Names!.ToArray(),
    };

    /// <summary>PEFT types <c>lora_alpha</c> as an int: integral values are written without a fraction.</summary>
    private static object AlphaValue(double alpha) =>
        alpha == Math.Floor(alpha) && Math.Abs(alpha) < int.MaxValue ? (int)alpha : (object)alpha;

    /// <summary>Typed access to the config's fields, remembering which keys were read.</summary>
    internal sealed class FieldReader(JsonElement root, string file)
    {
        public HashSet<string> Used { get; } = new(StringComparer.Ordinal);

        public JsonElement? Get(string key)
        {
            Used.Add(key);
            return root.TryGetProperty(key, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;
        }

        public string? String(string key) => Get(key) is { } e ? Expect(e, JsonValueKind.String, key, "a string").GetString() : null;

        public bool? Bool(string key) => Get(key) is { } e
            ? e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean() : throw Wrong(key, "true or false", e)
            : null;

        public int? Int(string key) => Get(key) is { } e ? e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var v) ? v : throw Wrong(key, "an integer", e) : null;

        public double? Double(string key) => Get(key) is { } e ? Expect(e, JsonValueKind.Number, key, "a number").GetDouble() : null;

        public IReadOnlyList<string>? StringList(string key) => Get(key) is { } e
            ? Expect(e, JsonValueKind.Array, key, "a list of strings").EnumerateArray().Select(i => Expect(i, JsonValueKind.String, key, "a list of strings").GetString()!).ToArray()
            : null;

        public IReadOnlyList<int>? IntOrList(string key) => Get(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.Number } e => [Int(key)!.Value],
            { ValueKind: JsonValueKind.Array } e => e.EnumerateArray().Select(i => i.ValueKind == JsonValueKind.Number && i.TryGetInt32(out var v) ? v : throw Wrong(key, "an integer or a list of integers", e)).ToArray(),
            var e => throw Wrong(key, "an integer or a list of integers", e.Value),
        };

        public LoraTargetModules? Targets(string key) => Get(key) switch
        {
            null => null,
            { ValueKind: JsonValueKind.String } e => LoraTargetModules.Parse(e.GetString()!),
            { ValueKind: JsonValueKind.Array } => LoraTargetModules.FromNames(StringList(key)!),
            var e => throw Wrong(key, "a string or a list of strings", e.Value),
        };

        public IReadOnlyDictionary<string, T> Pattern<T>(string key, Func<JsonElement, T?> read)
            where T : struct
        {
            var result = new Dictionary<string, T>(StringComparer.Ordinal);
            if (Get(key) is { } e)
            {
                foreach (var item in Expect(e, JsonValueKind.Object, key, "an object").EnumerateObject())
                {
                    result[item.Name] = (item.Value.ValueKind == JsonValueKind.Number ? read(item.Value) : null)
                        ?? throw Wrong($"{key}.{item.Name}", "a number", item.Value);
                }
            }

            return result;
        }

        private JsonElement Expect(JsonElement e, JsonValueKind kind, string key, string what) => e.ValueKind == kind ? e : throw Wrong(key, what, e);

        private CheckpointFormatException Wrong(string key, string what, JsonElement e) =>
            new($"{file}: {key} must be {what}, got {e.GetRawText()}.", file);
    }
}
