using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Quantization;

namespace FineTuning.Core.Strategies.FullSft;

/// <summary>
/// Full supervised fine-tuning: every parameter of the model trains (optionally not the embeddings or the
/// first layers). Weights train in the dtype the model was loaded in; when that is bf16 or fp16 the trainer
/// keeps fp32 master copies and the optimizer state in fp32, and copies the rounded result back after each step.
/// </summary>
/// <remarks>
/// Full SFT changes the base weights in place, so <see cref="Remove"/> only restores the <c>requires_grad</c>
/// flags; keep a copy of the base folder to go back. <see cref="Save"/> writes a complete Hugging Face model folder.
/// </remarks>
public sealed class FullSftStrategy : IParameterStrategy
{
    private readonly Dictionary<string, bool> originalFlags = new(StringComparer.Ordinal);

    /// <summary>Creates the strategy.</summary>
    /// <param name="options">The options; <see cref="FullSftOptions.Default"/> when omitted.</param>
    public FullSftStrategy(FullSftOptions? options = null)
    {
        Options = options ?? FullSftOptions.Default;
        Options.Validate();
    }

    /// <summary>The options.</summary>
    public FullSftOptions Options { get; }

    /// <inheritdoc />
    public string Method => "sft";

    /// <inheritdoc />
    public CausalLanguageModel? Model { get; private set; }

    /// <inheritdoc />
    public bool SupportsMerge => true;

    /// <inheritdoc />
    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(context);
        if (Model is not null)
        {
            throw new InvalidOperationException("This strategy is already applied to a model; create a new one.");
        }

        if (model.named_modules().FirstOrDefault(m => m.module is IQuantizedLinear) is { module: not null } quantized)
        {
            throw new InvalidOptionException("method", $"full fine-tuning cannot train a 4-bit model: '{quantized.name}' is a {quantized.module.GetType().Name}, whose weight is stored quantized and cannot take gradient updates. Train adapters on it (QLoRA: WithQLoRA / --method qlora, or LoRA), or load the full-precision model for full SFT.");
        }

        var layers = model.Config.NumHiddenLayers;
        if (Options.FreezeFirstLayers > layers)
        {
            throw new InvalidOptionException($"{nameof(FullSftOptions)}.{nameof(FullSftOptions.FreezeFirstLayers)}", $"the model has {layers} layers, cannot freeze {Options.FreezeFirstLayers}.");
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            originalFlags[name] = parameter.requires_grad;
            parameter.requires_grad = !IsFrozen(name);
        }

        Model = model;
    }

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters() =>
        RequireModel().named_parameters().Where(p => p.parameter.requires_grad).Select(p => new NamedParameter(p.name, p.parameter)).ToList();

    /// <summary>Nothing to fold: the weights are the base weights. Restores the flags like <see cref="Remove"/>.</summary>
    public void MergeAndUnload() => Remove();

    /// <inheritdoc />
    public void Remove()
    {
        var model = RequireModel();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (originalFlags.TryGetValue(name, out var flag))
            {
                parameter.requires_grad = flag;
            }
        }

        originalFlags.Clear();
        Model = null;
    }

    /// <summary>Writes the whole model as a Hugging Face folder (config.json and safetensors, in the model's dtype).</summary>
    /// <param name="directory">The folder.</param>
    public void Save(string directory) => HuggingFaceModel.Save(RequireModel(), directory);

    /// <summary>Loads every weight from a Hugging Face folder (with the same architecture) into the model.</summary>
    /// <param name="directory">The folder.</param>
    public void Load(string directory) => HuggingFaceWeights.Load(RequireModel(), directory);

    private bool IsFrozen(string name)
    {
        if (Options.FreezeEmbeddings && name == "model.embed_tokens.weight")
        {
            return true;
        }

        const string layerPrefix = "model.layers.";
        if (Options.FreezeFirstLayers > 0 && name.StartsWith(layerPrefix, StringComparison.Ordinal))
        {
            var end = name.IndexOf('.', layerPrefix.Length);
            var index = int.Parse(name.AsSpan(layerPrefix.Length, end - layerPrefix.Length), System.Globalization.CultureInfo.InvariantCulture);
            return index < Options.FreezeFirstLayers;
        }

        return false;
    }

    private CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");
}
