using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies;

/// <summary>
/// What prompt tuning and prefix tuning share (PEFT's prompt-learning methods): the base model is frozen, one small
/// encoder module trains, registered on the model as <c>prompt_encoder.default</c> (PEFT's in-memory name, so
/// <c>named_parameters()</c> and PEFT's parameter line count it), and plugged into a model seam. Nothing can be merged
/// into the base weights; <see cref="Remove"/> unregisters the encoder and restores the base's <c>requires_grad</c> flags.
/// </summary>
public abstract class PromptLearningStrategy : IParameterStrategy
{
    /// <summary>The name under which the encoder is registered on the model (PEFT's <c>PeftModel.prompt_encoder</c>).</summary>
    public const string EncoderModuleName = "prompt_encoder";

    /// <summary>The only adapter name (PEFT's <c>default</c>).</summary>
    public const string AdapterName = "default";

    /// <summary>The single tensor key of PEFT's saved prompt-learning adapters.</summary>
    public const string EmbeddingsKey = "prompt_embeddings";

    private readonly Dictionary<string, bool> originalFlags = new(StringComparer.Ordinal);
    private AdapterModuleDict<nn.Module>? container;

    /// <summary>Creates the strategy.</summary>
    /// <param name="trainable">Whether the encoder's parameters train (false when loaded for inference).</param>
    /// <param name="initialize">Whether <see cref="Apply"/> initialises the encoder (not when saved weights replace the init).</param>
    private protected PromptLearningStrategy(bool trainable, bool initialize)
    {
        Trainable = trainable;
        InitializeOnApply = initialize;
    }

    /// <inheritdoc />
    public abstract string Method { get; }

    /// <inheritdoc />
    public CausalLanguageModel? Model { get; private set; }

    /// <inheritdoc />
    public bool SupportsMerge => false;

    /// <summary>Whether the encoder's parameters require gradients.</summary>
    public bool Trainable { get; }

    /// <summary>Whether <see cref="Apply"/> initialises the encoder.</summary>
    private protected bool InitializeOnApply { get; }

    /// <inheritdoc />
    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(context);
        if (Model is not null)
        {
            throw new InvalidOperationException("This strategy is already applied to a model; create a new one.");
        }

        if (model.InputEmbeddingsHook is not null || model.AttentionPrefix is not null || model.named_children().Any(c => c.name == EncoderModuleName))
        {
            throw new InvalidOperationException("The model already has virtual tokens or an attention prefix (another prompt-learning strategy is applied); remove it first.");
        }

        var encoder = CreateEncoder(model, context);
        foreach (var (name, parameter) in model.named_parameters())
        {
            originalFlags[name] = parameter.requires_grad;
            parameter.requires_grad = false;
        }

        foreach (var (_, parameter) in encoder.named_parameters())
        {
            parameter.requires_grad = Trainable;
        }

        container = new AdapterModuleDict<nn.Module>();
        container.Add(AdapterName, encoder);
        container.train(model.training);
        model.register_module(EncoderModuleName, container);
        Attach(model, encoder);
        Model = model;
    }

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters() =>
        RequireModel().named_parameters().Where(p => p.parameter.requires_grad).Select(p => new NamedParameter(p.name, p.parameter)).ToList();

    /// <summary>Not supported: virtual tokens and prefixes have no counterpart in the base weights.</summary>
    /// <exception cref="NotSupportedException">Always.</exception>
    public void MergeAndUnload() =>
        throw new NotSupportedException($"A {Method} adapter cannot be merged into the base weights: its virtual tokens have no counterpart in them. Load the adapter with the base instead (AdapterLoader.Load, --adapter).");

    /// <inheritdoc />
    public void Remove()
    {
        var model = RequireModel();
        Detach(model);
        model.register_module(EncoderModuleName, null!); // TorchSharp's way to unregister a child
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (originalFlags.TryGetValue(name, out var flag))
            {
                parameter.requires_grad = flag;
            }
        }

        originalFlags.Clear();
        container?.Dispose();
        container = null;
        Model = null;
    }

    /// <inheritdoc />
    public abstract void Save(string directory);

    /// <inheritdoc />
    public abstract void Load(string directory);

    /// <summary>Validates the options against the model and builds the encoder (on the model's device, fp32, initialised).</summary>
    /// <param name="model">The model.</param>
    /// <param name="context">Tokenizer and logger.</param>
    /// <returns>The encoder.</returns>
    private protected abstract nn.Module CreateEncoder(CausalLanguageModel model, StrategyContext context);

    /// <summary>Plugs the encoder into the model's seam.</summary>
    private protected abstract void Attach(CausalLanguageModel model, nn.Module encoder);

    /// <summary>Unplugs the encoder from the model's seam.</summary>
    private protected abstract void Detach(CausalLanguageModel model);

    /// <summary>The model, or an exception when the strategy is not applied.</summary>
    /// <returns>The model.</returns>
    private protected CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");

    /// <summary>Writes PEFT's <c>adapter_model.safetensors</c>: the single tensor <c>prompt_embeddings</c>.</summary>
    private protected static void WriteEmbeddings(string directory, Tensor embeddings) =>
        PeftAdapterFiles.WriteWeights(directory, [new(EmbeddingsKey, embeddings)]);

    /// <summary>Reads <c>prompt_embeddings</c> from PEFT's <c>adapter_model.safetensors</c> into a parameter (same shape, nothing else in the file).</summary>
    private protected void ReadEmbeddings(string directory, Tensor destination) =>
        PeftAdapterFiles.ReadWeights(directory, new Dictionary<string, Tensor> { [EmbeddingsKey] = destination },
            _ => $"a {Method} adapter holds only '{EmbeddingsKey}' (is it another method's adapter, or saved with modules_to_save?).");

    /// <summary>A generator for initialisation on the model's device (CPU for a meta model).</summary>
    private protected static Generator InitGenerator(CausalLanguageModel model, long seed) =>
        new((ulong)seed, model.Device.type == DeviceType.META ? CPU : model.Device);
}
