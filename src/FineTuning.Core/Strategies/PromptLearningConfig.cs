using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Strategies;

/// <summary>
/// The fields every PEFT prompt-learning config (<c>PromptLearningConfig</c>: prompt tuning, prefix tuning) shares, and
/// the file I/O both methods use: written like <see cref="LoraAdapterConfig"/> (<c>json.dumps(indent=2, sort_keys=True)</c>,
/// ASCII only), read leniently (unknown keys are logged and ignored, as newer PEFT does).
/// </summary>
internal static class PromptLearningConfig
{
    /// <summary>Keys that carry no meaning for loading.</summary>
    private static readonly HashSet<string> Bookkeeping = new(StringComparer.Ordinal)
    {
        "auto_mapping", "inference_mode", "peft_version", "revision", "runtime_config", "base_model_name_or_path", "task_type", "peft_type",
    };

    /// <summary>The shared fields, sorted; a method adds its own before writing.</summary>
    public static SortedDictionary<string, object?> CommonFields(string peftType, PromptLearningDimensions dimensions, string? baseModelNameOrPath) => new(StringComparer.Ordinal)
    {
        ["auto_mapping"] = null,
        ["base_model_name_or_path"] = baseModelNameOrPath,
        ["inference_mode"] = true,
        ["modules_to_save"] = null,
        ["num_attention_heads"] = dimensions.NumAttentionHeads,
        ["num_layers"] = dimensions.NumLayers,
        ["num_transformer_submodules"] = 1,
        ["num_virtual_tokens"] = dimensions.NumVirtualTokens,
        ["peft_type"] = peftType,
        ["revision"] = null,
        ["task_type"] = "CAUSAL_LM",
        ["token_dim"] = dimensions.TokenDim,
    };

    /// <summary>Writes <c>adapter_config.json</c> into a folder, atomically.</summary>
    public static void Write(string directory, IDictionary<string, object?> fields)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.WriteAllText(Path.Combine(directory, AdapterLoader.ConfigFileName), PythonJson.Indented(fields));
    }

    /// <summary>
    /// Reads a prompt-learning config: checks <c>peft_type</c>, the task and the shared fields, hands the method's own
    /// fields to <paramref name="readMethodFields"/> and logs every key neither knows.
    /// </summary>
    /// <exception cref="FileNotFoundException">The folder has no adapter_config.json.</exception>
    /// <exception cref="CheckpointFormatException">The file is not valid JSON or a value has the wrong type.</exception>
    /// <exception cref="NotSupportedException">The file describes another method, task or a feature this library lacks.</exception>
    public static T Read<T>(string directory, string peftType, ILogger logger, Func<LoraAdapterConfig.FieldReader, string, T> readMethodFields)
    {
        var path = Path.Combine(directory, AdapterLoader.ConfigFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{directory}' holds no {AdapterLoader.ConfigFileName}; is it a PEFT adapter folder?", path);
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException ex)
        {
            throw new CheckpointFormatException($"{path} is not valid JSON: {ex.Message}", path, null, ex);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new CheckpointFormatException($"{path} must hold a JSON object, got a {root.ValueKind}.", path);
            }

            var reader = new LoraAdapterConfig.FieldReader(root, path);
            var type = reader.String("peft_type");
            if (type != peftType)
            {
                throw new NotSupportedException($"{path} describes a {type ?? "(no peft_type)"} adapter, not {peftType}.");
            }

            var task = reader.String("task_type");
            if (task is not null and not "CAUSAL_LM")
            {
                throw new NotSupportedException($"{path}: task_type {task} is not supported; only CAUSAL_LM adapters apply to a causal language model.");
            }

            var submodules = reader.Int("num_transformer_submodules") ?? 1;
            if (submodules != 1)
            {
                throw new NotSupportedException($"{path}: num_transformer_submodules {submodules} is for encoder-decoder models; a causal language model has 1.");
            }

            if (reader.StringList("modules_to_save") is { Count: > 0 } saved)
            {
                throw new NotSupportedException($"{path} sets modules_to_save = [{string.Join(", ", saved)}], which this library does not support for {peftType}.");
            }

            var result = readMethodFields(reader, path);
            foreach (var property in root.EnumerateObject())
            {
                if (!reader.Used.Contains(property.Name) && !Bookkeeping.Contains(property.Name))
                {
                    logger.LogWarning("{File}: ignoring unknown key '{Key}'.", path, property.Name);
                }
            }

            return result;
        }
    }

    /// <summary>Reads the shared dimensions (each may be missing: PEFT fills them from the model).</summary>
    public static PromptLearningDimensions ReadDimensions(LoraAdapterConfig.FieldReader reader, string path)
    {
        var tokens = reader.Int("num_virtual_tokens")
            ?? throw new CheckpointFormatException($"{path} has no num_virtual_tokens.", path);
        return new PromptLearningDimensions(tokens, reader.Int("token_dim"), reader.Int("num_layers"), reader.Int("num_attention_heads"));
    }

    /// <summary>Refuses a saved value that differs from the model's.</summary>
    /// <exception cref="CheckpointFormatException">The values differ.</exception>
    public static void Expect(string path, string field, int? saved, int actual, string what)
    {
        if (saved is { } value && value != actual)
        {
            throw new CheckpointFormatException($"{path}: {field} is {value}, but the model's {what} is {actual} (an adapter for a different base model?).", path, field);
        }
    }
}
