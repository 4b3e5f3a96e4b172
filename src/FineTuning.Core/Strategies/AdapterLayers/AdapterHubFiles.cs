using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>
/// AdapterHub's (<c>adapters</c> library) adapter folder for bottleneck adapters: <c>adapter_config.json</c>
/// (<c>{"config": {BnConfig fields}, "hidden_size", "model_class", "model_name", "model_type", "name", "version"}</c>,
/// written as <c>json.dump(indent=2, sort_keys=True)</c>) and <c>adapter.safetensors</c> whose keys are the Llama
/// model's parameter names, e.g. <c>model.layers.0.output_adapters.adapters.{name}.adapter_down.0.weight</c>
/// (after the MLP) and <c>model.layers.0.attention_adapters.adapters.{name}.adapter_up.bias</c> (after the attention).
/// </summary>
/// <remarks>
/// Reading applies <c>BnConfig</c>'s defaults to missing fields, accepts the named configs <c>seq_bn</c>/<c>pfeiffer</c>
/// and <c>double_seq_bn</c>/<c>houlsby</c> as the whole <c>config</c>, and refuses, naming the field, every value this
/// library cannot reproduce exactly (parallel adapters, gating, extra layer norms, PHM layers, learned scaling,
/// invertible adapters, stochastic depth, per-layer reduction factors…) instead of running something else.
/// </remarks>
public static class AdapterHubFiles
{
    /// <summary>The config file name (shared with PEFT, told apart by having no <c>peft_type</c>).</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>The weights file name (AdapterHub's <c>SAFE_WEIGHTS_NAME</c>).</summary>
    public const string WeightsFileName = "adapter.safetensors";

    /// <summary>The <c>version</c> written to the config (<c>"adapters." + __version__</c> of the release the format follows).</summary>
    public const string Version = "adapters.1.2.0";

    private const string AttentionSegment = ".attention_adapters.";
    private const string OutputSegment = ".output_adapters.";

    /// <summary>
    /// Whether a folder's <c>adapter_config.json</c> is AdapterHub's: a JSON object without <c>peft_type</c> whose
    /// <c>config</c> is an object or a named config.
    /// </summary>
    /// <param name="directory">The folder.</param>
    /// <returns><c>true</c> for an AdapterHub config (of any architecture).</returns>
    public static bool IsAdapterHubFolder(string directory)
    {
        var path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path))
        {
            return false;
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object
                && !root.TryGetProperty("peft_type", out _)
                && root.TryGetProperty("config", out var config)
                && config.ValueKind is JsonValueKind.Object or JsonValueKind.String;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>The saved key of an in-memory parameter name (<c>…mlp_adapter.…</c> → <c>…output_adapters.…</c>, <c>…attention_adapter.…</c> → <c>…attention_adapters.…</c>).</summary>
    /// <param name="parameterName">The name as <c>named_parameters()</c> gives it.</param>
    /// <returns>AdapterHub's key.</returns>
    public static string ToAdapterHubKey(string parameterName)
    {
        ArgumentNullException.ThrowIfNull(parameterName);
        return parameterName
            .Replace("." + DecoderLayer.MlpAdapterName + ".", OutputSegment, StringComparison.Ordinal)
            .Replace("." + DecoderLayer.AttentionAdapterName + ".", AttentionSegment, StringComparison.Ordinal);
    }

    /// <summary>Reads a bottleneck adapter's config.</summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="adapterName">The adapter's <c>name</c> (<c>default</c> when the file has none).</param>
    /// <param name="hiddenSize">The <c>hidden_size</c> the adapter was trained with, when the file says.</param>
    /// <param name="logger">Receives warnings about ignored fields.</param>
    /// <returns>The options that reproduce the adapter.</returns>
    /// <exception cref="FileNotFoundException">The folder has no adapter_config.json.</exception>
    /// <exception cref="CheckpointFormatException">The file is not an AdapterHub bottleneck config, or a field has a value this library cannot reproduce.</exception>
    public static AdapterLayersOptions ReadConfig(string directory, out string adapterName, out int? hiddenSize, ILogger? logger = null)
    {
        var path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{directory}' holds no {ConfigFileName}; is it an adapter folder?", path);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path} is not valid JSON: {e.Message}", path, null, e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("config", out var config))
            {
                throw new CheckpointFormatException($"{path} is not an AdapterHub adapter config: it has no \"config\" object.", path);
            }

            adapterName = root.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String ? name.GetString()! : AdapterLayersOptions.DefaultAdapterName;
            hiddenSize = root.TryGetProperty("hidden_size", out var hidden) && hidden.ValueKind == JsonValueKind.Number ? hidden.GetInt32() : null;
            if (root.TryGetProperty("model_type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() is not ("llama" or "mistral" or "qwen2"))
            {
                throw new CheckpointFormatException($"{path}: model_type '{type.GetString()}' is not a Llama-family model (llama, mistral, qwen2); its adapters sit elsewhere.", path);
            }

            var hasVersion = root.TryGetProperty("version", out _);
            var modelName = root.TryGetProperty("model_name", out var model) && model.ValueKind == JsonValueKind.String ? model.GetString() : null;
            var options = config.ValueKind == JsonValueKind.String
                ? Named(config.GetString()!, path)
                : Parse(config, path, hasVersion, logger);
            return options with { BaseModelNameOrPath = modelName };
        }
    }

    /// <summary>Writes <c>adapter_config.json</c> as AdapterHub does, atomically.</summary>
    /// <param name="directory">The adapter folder (created when missing).</param>
    /// <param name="options">The adapter's options.</param>
    /// <param name="adapterName">The adapter's name.</param>
    /// <param name="modelConfig">The base model's config.</param>
    public static void WriteConfig(string directory, AdapterLayersOptions options, string adapterName, ModelConfig modelConfig)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(modelConfig);
        Directory.CreateDirectory(directory);
        var config = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["adapter_residual_before_ln"] = false,
            ["cross_adapter"] = false,
            ["dropout"] = options.Dropout,
            ["factorized_phm_W"] = true,
            ["factorized_phm_rule"] = false,
            ["hypercomplex_nonlinearity"] = "glorot-uniform",
            ["init_weights"] = options.Init switch { AdapterInit.Identity => "mam_adapter", AdapterInit.Bert => "bert", _ => "houlsby" },
            ["init_weights_seed"] = null,
            ["inv_adapter"] = null,
            ["inv_adapter_reduction_factor"] = null,
            ["is_parallel"] = false,
            ["learn_phm"] = true,
            ["leave_out"] = options.LeaveOut.Select(i => (object?)(long)i).ToList(),
            ["ln_after"] = false,
            ["ln_before"] = false,
            ["mh_adapter"] = options.Placement == AdapterPlacement.Houlsby,
            ["non_linearity"] = options.EffectiveNonLinearity.ToString().ToLowerInvariant(),
            ["original_ln_after"] = true,
            ["original_ln_before"] = options.EffectiveOriginalLnBefore,
            ["output_adapter"] = true,
            ["phm_bias"] = true,
            ["phm_c_init"] = "normal",
            ["phm_dim"] = 4L,
            ["phm_init_range"] = 0.0001,
            ["phm_layer"] = false,
            ["phm_rank"] = 1L,
            ["reduction_factor"] = options.ReductionFactor == Math.Floor(options.ReductionFactor) ? (object)(long)options.ReductionFactor : options.ReductionFactor,
            ["residual_before_ln"] = options.ResidualBeforeLn,
            ["scaling"] = options.Scaling,
            ["shared_W_phm"] = false,
            ["shared_phm_rule"] = true,
            ["stochastic_depth"] = 0.0,
            ["use_gating"] = false,
        };
        var root = new SortedDictionary<string, object?>(StringComparer.Ordinal)
        {
            ["config"] = config,
            ["hidden_size"] = (long)modelConfig.HiddenSize,
            ["model_class"] = modelConfig.Family switch { ModelFamily.Mistral => "MistralForCausalLM", ModelFamily.Qwen2 => "Qwen2ForCausalLM", _ => "LlamaForCausalLM" },
            ["model_name"] = options.BaseModelNameOrPath,
            ["model_type"] = modelConfig.Family switch { ModelFamily.Mistral => "mistral", ModelFamily.Qwen2 => "qwen2", _ => "llama" },
            ["name"] = adapterName,
            ["version"] = Version,
        };
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), PythonJson.Indented(root));
    }

    private static AdapterLayersOptions Named(string name, string path) => name switch
    {
        "seq_bn" or "pfeiffer" => new AdapterLayersOptions { Placement = AdapterPlacement.Pfeiffer, Init = AdapterInit.Bert },
        "double_seq_bn" or "houlsby" => new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby, Init = AdapterInit.Bert },
        _ => throw new CheckpointFormatException($"{path}: config '{name}' is not a sequential bottleneck config this library supports (seq_bn, pfeiffer, double_seq_bn, houlsby).", path),
    };

    private static AdapterLayersOptions Parse(JsonElement config, string path, bool hasVersion, ILogger? logger)
    {
        CheckpointFormatException Refuse(string field, string message) => new($"{path}: config.{field} {message}", path);

        JsonElement? Get(string field) => config.TryGetProperty(field, out var value) && value.ValueKind != JsonValueKind.Null ? value : null;

        bool Bool(string field, bool fallback) => Get(field) switch
        {
            null => fallback,
            { ValueKind: JsonValueKind.True } => true,
            { ValueKind: JsonValueKind.False } => false,
            var other => throw Refuse(field, $"must be true or false, got {other.Value.GetRawText()}."),
        };

        double Number(string field, double fallback) => Get(field) switch
        {
            null => fallback,
            { ValueKind: JsonValueKind.Number } n => n.GetDouble(),
            var other => throw Refuse(field, $"must be a number, got {other.Value.GetRawText()}."),
        };

        void Require(string field, bool value, bool expected, string why)
        {
            if (value != expected)
            {
                throw Refuse(field, $"= {(value ? "true" : "false")} is not supported: {why}");
            }
        }

        if (Get("architecture") is { } architecture && !(architecture.ValueKind == JsonValueKind.String && architecture.GetString() == "bottleneck"))
        {
            throw Refuse("architecture", $"is {architecture.GetRawText()}: only bottleneck adapters (AdapterHub's BnConfig) are supported by the adapters method.");
        }

        foreach (var required in new[] { "mh_adapter", "output_adapter", "reduction_factor", "non_linearity" })
        {
            if (Get(required) is null)
            {
                throw Refuse(required, "is missing; a BnConfig needs mh_adapter, output_adapter, reduction_factor and non_linearity.");
            }
        }

        var attention = Bool("mh_adapter", false);
        var output = Bool("output_adapter", false);
        var placement = (attention, output) switch
        {
            (false, true) => AdapterPlacement.Pfeiffer,
            (true, true) => AdapterPlacement.Houlsby,
            _ => throw Refuse("mh_adapter", $"= {attention.ToString().ToLowerInvariant()} with output_adapter = {output.ToString().ToLowerInvariant()} is not supported: adapters go after the MLP (Pfeiffer) or after the attention and the MLP (Houlsby)."),
        };

        var reduction = Get("reduction_factor")!.Value;
        double reductionFactor;
        if (reduction.ValueKind == JsonValueKind.Object)
        {
            var keys = reduction.EnumerateObject().Select(p => p.Name).ToList();
            if (keys is not ["default"] || reduction.GetProperty("default").ValueKind != JsonValueKind.Number)
            {
                throw Refuse("reduction_factor", $"per-layer reduction factors ({reduction.GetRawText()}) are not supported; give one number.");
            }

            reductionFactor = reduction.GetProperty("default").GetDouble();
        }
        else
        {
            reductionFactor = Number("reduction_factor", 16);
        }

        var activationText = Get("non_linearity")!.Value.ValueKind == JsonValueKind.String ? Get("non_linearity")!.Value.GetString()!.ToLowerInvariant() : "";
        var nonLinearity = activationText switch
        {
            "relu" => AdapterNonLinearity.Relu,
            "swish" or "silu" => AdapterNonLinearity.Swish,
            "gelu" when hasVersion => AdapterNonLinearity.Gelu,
            "gelu_orig" when !hasVersion => AdapterNonLinearity.Gelu,
            "tanh" => AdapterNonLinearity.Tanh,
            "gelu" => throw Refuse("non_linearity", "'gelu' in a config without \"version\" means gelu_new (the tanh approximation) to AdapterHub, which is not supported (relu, swish/silu, gelu, tanh)."),
            _ => throw Refuse("non_linearity", $"'{Get("non_linearity")!.Value.GetRawText()}' is not supported (relu, swish/silu, gelu, tanh)."),
        };

        Require("original_ln_after", Bool("original_ln_after", true), true, "without it AdapterHub's Llama layer drops the residual stream after the adapter.");
        Require("ln_before", Bool("ln_before", false), false, "the adapter's own layer norms are not implemented.");
        Require("ln_after", Bool("ln_after", false), false, "the adapter's own layer norms are not implemented.");
        Require("is_parallel", Bool("is_parallel", false), false, "parallel adapters (par_bn) are not implemented.");
        Require("use_gating", Bool("use_gating", false), false, "gated adapters (UniPELT) are not implemented.");
        Require("phm_layer", Bool("phm_layer", false), false, "PHM (Compacter) layers are not implemented.");
        _ = Bool("adapter_residual_before_ln", false); // only matters with ln_after
        _ = Bool("cross_adapter", false); // decoder-only models have no cross-attention
        if (Get("inv_adapter") is { } inv)
        {
            throw Refuse("inv_adapter", $"is {inv.GetRawText()}: invertible adapters (MAD-X) are not implemented.");
        }

        if (Get("residual_before_ln") is { ValueKind: JsonValueKind.String } postAdd)
        {
            throw Refuse("residual_before_ln", $"is {postAdd.GetRawText()}: only true or false are supported.");
        }

        if (Get("scaling") is { ValueKind: JsonValueKind.String } learned)
        {
            throw Refuse("scaling", $"is {learned.GetRawText()}: learned scaling is not implemented; give a number.");
        }

        if (Number("stochastic_depth", 0) != 0)
        {
            throw Refuse("stochastic_depth", "must be 0: stochastic depth is not implemented.");
        }

        var leaveOut = new List<int>();
        if (Get("leave_out") is { } list)
        {
            if (list.ValueKind != JsonValueKind.Array || list.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out _)))
            {
                throw Refuse("leave_out", $"must be a list of layer indices, got {list.GetRawText()}.");
            }

            leaveOut.AddRange(list.EnumerateArray().Select(e => e.GetInt32()));
        }

        var init = Get("init_weights") is { ValueKind: JsonValueKind.String } initText
            ? initText.GetString() switch
            {
                "bert" => AdapterInit.Bert,
                "mam_adapter" => AdapterInit.Identity,
                "houlsby" => AdapterInit.Houlsby,
                var other => throw Refuse("init_weights", $"'{other}' is not supported (bert, mam_adapter, houlsby)."),
            }
            : AdapterInit.Bert;

        var known = new HashSet<string>(StringComparer.Ordinal)
        {
            "architecture", "mh_adapter", "output_adapter", "reduction_factor", "non_linearity", "original_ln_before", "original_ln_after",
            "ln_before", "ln_after", "init_weights", "init_weights_seed", "is_parallel", "scaling", "use_gating", "residual_before_ln",
            "adapter_residual_before_ln", "inv_adapter", "inv_adapter_reduction_factor", "cross_adapter", "leave_out", "dropout", "phm_layer",
            "phm_dim", "factorized_phm_W", "shared_W_phm", "shared_phm_rule", "factorized_phm_rule", "phm_c_init", "phm_init_range",
            "learn_phm", "hypercomplex_nonlinearity", "phm_rank", "phm_bias", "stochastic_depth",
        };
        foreach (var property in config.EnumerateObject().Where(p => !known.Contains(p.Name)))
        {
            if (property.Value.ValueKind is JsonValueKind.Null or JsonValueKind.False || property.Value.GetRawText() is "0" or "0.0" or "[]" or "{}")
            {
                logger?.LogWarning("{Path}: ignoring unknown config field {Field} = {Value} (off).", path, property.Name, property.Value.GetRawText());
                continue;
            }

            throw Refuse(property.Name, $"= {property.Value.GetRawText()} is not a BnConfig field this library knows; refusing rather than ignoring it.");
        }

        var options = new AdapterLayersOptions
        {
            Placement = placement,
            ReductionFactor = reductionFactor,
            NonLinearity = nonLinearity,
            Init = init,
            Scaling = Number("scaling", 1.0),
            Dropout = Number("dropout", 0.0),
            LeaveOut = leaveOut,
            OriginalLnBefore = Bool("original_ln_before", false),
            ResidualBeforeLn = Bool("residual_before_ln", true),
            Seed = Get("init_weights_seed") is { ValueKind: JsonValueKind.Number } seed && seed.TryGetInt64(out var s) ? s : AdapterLayersOptions.Default.Seed,
        };
        try
        {
            options.Validate();
        }
        catch (InvalidOptionException e)
        {
            throw new CheckpointFormatException($"{path}: {e.Message}", path, null, e);
        }

        return options;
    }
}
