using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>
/// Loads and saves a whole Hugging Face model folder: <c>config.json</c> plus <c>model.safetensors</c>
/// (or shards with <c>model.safetensors.index.json</c>).
/// </summary>
public static class HuggingFaceModel
{
    /// <summary>The config file name.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>Whether the folder holds weights (a single safetensors file or a shard index).</summary>
    /// <param name="directory">The model folder.</param>
    /// <returns><c>true</c> when weights are present.</returns>
    public static bool HasWeights(string directory) =>
        File.Exists(Path.Combine(directory, "model.safetensors")) || File.Exists(Path.Combine(directory, "model.safetensors.index.json"));

    /// <summary>
    /// Builds the model described by <c>config.json</c> and loads its weights. A folder whose config has a bitsandbytes
    /// <c>quantization_config</c> (a "-bnb-4bit" checkpoint) loads through <see cref="QuantizedModelFiles.Load"/>, with
    /// 4-bit projections.
    /// </summary>
    /// <param name="directory">The model folder.</param>
    /// <param name="options">Device and dtype; default CPU in the config's dtype.</param>
    /// <returns>The model in evaluation mode.</returns>
    /// <exception cref="ModelConfigException">The config is invalid.</exception>
    /// <exception cref="CheckpointFormatException">A weight file is missing, malformed or does not match the config.</exception>
    public static CausalLanguageModel Load(string directory, ModelLoadOptions? options = null)
    {
        options ??= new ModelLoadOptions();
        if (QuantizedModelFiles.IsQuantizedFolder(directory))
        {
            return QuantizedModelFiles.Load(directory, options);
        }

        var config = ModelConfig.Load(Path.Combine(directory, ConfigFileName));
        if (!HasWeights(directory))
        {
            throw new FileNotFoundException($"{directory} holds no model.safetensors or model.safetensors.index.json.", Path.Combine(directory, "model.safetensors"));
        }

        var model = CausalLanguageModel.Create(config, options.Device ?? CPU, options.DType);
        try
        {
            // A tied model's files may still carry lm_head.weight (a copy of the embeddings): ignore it.
            var loadOptions = config.TieWordEmbeddings ? new WeightLoadOptions { IgnoredUnexpectedNames = ["lm_head.weight"] } : WeightLoadOptions.Default;
            HuggingFaceWeights.Load(model, directory, loadOptions);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes <c>config.json</c> (with the model's dtype) and the weights, each file atomically. A model with 4-bit
    /// layers is written in bitsandbytes' layout by <see cref="QuantizedModelFiles.Save"/>.
    /// </summary>
    /// <param name="model">The model to save.</param>
    /// <param name="directory">The folder (created if needed).</param>
    /// <param name="options">Sharding and dtype options for the weights.</param>
    public static void Save(CausalLanguageModel model, string directory, WeightSaveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (QuantizedModelFiles.IsQuantized(model))
        {
            QuantizedModelFiles.Save(model, directory, options);
            return;
        }

        Directory.CreateDirectory(directory);
        var dtype = options?.DType ?? model.DType;
        var config = model.Config with { TorchDtype = ModelConfig.DtypeName(dtype) };
        HuggingFaceWeights.Save(model, directory, options);
        AtomicFile.WriteAllText(Path.Combine(directory, ConfigFileName), config.ToJson());
    }
}
