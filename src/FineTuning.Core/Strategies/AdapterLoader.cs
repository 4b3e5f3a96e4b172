using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Strategies.PromptTuning;
using FineTuning.Core.Strategies.QLora;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Strategies;

/// <summary>
/// Opens a saved adapter folder of any supported method: reads <c>peft_type</c> from <c>adapter_config.json</c>
/// and applies the matching strategy, with its weights, to a base model.
/// </summary>
public static class AdapterLoader
{
    /// <summary>The config file every PEFT adapter folder holds.</summary>
    public const string ConfigFileName = "adapter_config.json";

    /// <summary>Reads the adapter's <c>peft_type</c> (for example <c>LORA</c>).</summary>
    /// <param name="directory">The adapter folder.</param>
    /// <returns>The type as written in the file.</returns>
    /// <exception cref="FileNotFoundException">The folder holds no adapter_config.json.</exception>
    /// <exception cref="CheckpointFormatException">The file is not JSON or has no string <c>peft_type</c>.</exception>
    public static string ReadPeftType(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var path = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"'{directory}' holds no {ConfigFileName}; is it an adapter folder?", path);
        }

        try
        {
            using var document = JsonDocument.Parse(File.ReadAllText(path));
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("peft_type", out var type) && type.ValueKind == JsonValueKind.String
                ? type.GetString()!
                : throw new CheckpointFormatException($"{path} has no string field \"peft_type\".", path);
        }
        catch (JsonException e)
        {
            throw new CheckpointFormatException($"{path} is not valid JSON: {e.Message}", path, null, e);
        }
    }

    /// <summary>
    /// Applies the adapter saved in a folder to a base model (frozen unless <paramref name="isTrainable"/>). An AdapterHub
    /// folder (no <c>peft_type</c>; a <c>config</c> object) comes back as an <see cref="AdapterLayers.AdapterLayersStrategy"/>. A LoRA
    /// adapter on a 4-bit base comes back as a <see cref="QLoraStrategy"/> (a QLoRA adapter is a LoRA adapter), whose
    /// <see cref="QLoraStrategy.MergeAndUnload()"/> exports 16-bit weights; on a 16-bit base, as a <see cref="LoraStrategy"/>.
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="isTrainable">Leave the adapter's parameters trainable (to continue training).</param>
    /// <param name="logger">Receives warnings such as ignored config keys.</param>
    /// <returns>The applied strategy.</returns>
    /// <exception cref="NotSupportedException">The adapter's method is not supported.</exception>
    public static IParameterStrategy Load(string directory, CausalLanguageModel model, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (AdapterLayers.AdapterHubFiles.IsAdapterHubFolder(directory))
        {
            return AdapterLayers.AdapterLayersStrategy.FromPretrained(directory, model, isTrainable, logger);
        }

        // An OPD (Optimal Parameter Decoupling) delta folder has opd_config.json instead of a PEFT config.
        if (Opd.SparseDelta.IsDeltaFolder(directory))
        {
            return Opd.OpdStrategy.FromPretrained(directory, model, isTrainable, logger);
        }

        var type = ReadPeftType(directory);
        return type switch
        {
            "LORA" when QuantizedModelFiles.IsQuantized(model) => QLoraStrategy.FromPretrained(directory, model, isTrainable, logger: logger),
            "LORA" => LoraStrategy.FromPretrained(directory, model, LoraStrategy.DefaultAdapterName, isTrainable, logger),
            "PROMPT_TUNING" => PromptTuningStrategy.FromPretrained(directory, model, isTrainable, logger),
            "PREFIX_TUNING" => PrefixTuningStrategy.FromPretrained(directory, model, isTrainable, logger),
            _ => throw new NotSupportedException($"{Path.Combine(directory, ConfigFileName)}: peft_type {type} is not supported (supported: LORA, PROMPT_TUNING, PREFIX_TUNING)."),
        };
    }

    /// <summary>Applies a strategy, then loads its weights; when loading fails the strategy is removed again and the error rethrown.</summary>
    internal static TStrategy ApplyAndLoad<TStrategy>(TStrategy strategy, CausalLanguageModel model, ILogger? logger, Action<TStrategy> load)
        where TStrategy : IParameterStrategy
    {
        strategy.Apply(model, new StrategyContext { Logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance });
        try
        {
            load(strategy);
        }
        catch
        {
            strategy.Remove();
            throw;
        }

        return strategy;
    }
}
