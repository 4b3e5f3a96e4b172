using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.PrefixTuning;

/// <summary>
/// Prefix tuning (Li and Liang 2021) with Hugging Face PEFT's semantics: a <see cref="PrefixEncoder"/>
/// (<c>prompt_encoder.default.*</c>) supplies T key/value positions to every attention layer through the model's
/// attention-prefix seam; real tokens attend to them, positions start after them (as with PEFT's
/// <c>past_key_values</c>), and the base model is frozen. Saved as a PEFT folder: <c>adapter_config.json</c>
/// (<c>PREFIX_TUNING</c>) and <c>adapter_model.safetensors</c> with the single tensor <c>prompt_embeddings</c>
/// [T, layers·2·kv_dim] fp32 — the encoder's output (PEFT's <c>get_prompt_embedding_to_save</c>), so with
/// <see cref="PrefixTuningOptions.PrefixProjection"/> the MLP is not in it and loading for inference needs none.
/// </summary>
/// <remarks>
/// With projection, <see cref="Save"/> also writes <c>prefix_encoder.safetensors</c> (this library's addition: the
/// embedding and MLP weights under their module names) so a training checkpoint can resume; PEFT ignores the file.
/// Packing works (prefix positions are visible to every packed example); so do KV-cache generation and activation
/// checkpointing (the recomputed layer back-propagates into the encoder).
/// </remarks>
public sealed class PrefixTuningStrategy : PromptLearningStrategy
{
    /// <summary>The file holding the encoder's own weights when it has a projection (not part of PEFT's format).</summary>
    public const string EncoderFileName = "prefix_encoder.safetensors";

    private PrefixEncoder? encoder;

    /// <summary>Creates the strategy.</summary>
    /// <param name="options">The options; <see cref="PrefixTuningOptions.Default"/> when omitted.</param>
    /// <exception cref="InvalidOptionException">An option is invalid.</exception>
    public PrefixTuningStrategy(PrefixTuningOptions? options = null)
        : this(options ?? PrefixTuningOptions.Default, trainable: true, initialize: true)
    {
    }

    private PrefixTuningStrategy(PrefixTuningOptions options, bool trainable, bool initialize) : base(trainable, initialize)
    {
        options.Validate();
        Options = options;
    }

    /// <summary>The options.</summary>
    public PrefixTuningOptions Options { get; }

    /// <inheritdoc />
    public override string Method => "prefix";

    /// <summary>The prefix encoder, or <c>null</c> when the strategy is not applied.</summary>
    public PrefixEncoder? Encoder => encoder;

    /// <summary>
    /// Applies a saved prefix-tuning adapter (written by <see cref="Save"/> or by PEFT) to a base model, as PEFT's
    /// <c>PeftModel.from_pretrained</c> does in inference mode: the encoder is the saved <c>prompt_embeddings</c>
    /// [T, layers·2·kv_dim] itself, with no MLP even when the adapter was trained with a projection (it then trains
    /// as a plain prefix when <paramref name="isTrainable"/>). On failure the model is left as it was.
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="isTrainable">Leave the prefix trainable (to continue training).</param>
    /// <param name="logger">Receives warnings such as ignored config keys.</param>
    /// <returns>The applied strategy.</returns>
    /// <exception cref="CheckpointFormatException">The config or the tensor does not fit the model.</exception>
    /// <exception cref="NotSupportedException">The config is for another method or task.</exception>
    public static PrefixTuningStrategy FromPretrained(string directory, CausalLanguageModel model, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var options = PrefixTuningAdapterConfig.Read(directory, model.Config, logger ?? NullLogger.Instance);
        var strategy = new PrefixTuningStrategy(options with { PrefixProjection = false }, isTrainable, initialize: false);
        return AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.Load(directory));
    }

    /// <summary>
    /// Trainable parameters of the encoder for a model, by PEFT's formula: T·layers·2·kv_dim without projection;
    /// T·kv_dim + (kv_dim·h + h) + (h·layers·2·kv_dim + layers·2·kv_dim) with projection (h = encoder hidden size).
    /// </summary>
    /// <param name="options">The options.</param>
    /// <param name="config">The model's architecture.</param>
    /// <returns>The count.</returns>
    public static long ParameterCount(PrefixTuningOptions options, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(config);
        long kv = (long)config.NumKeyValueHeads * config.HeadDim;
        var output = config.NumHiddenLayers * 2 * kv;
        if (!options.PrefixProjection)
        {
            return options.NumVirtualTokens * output;
        }

        long hidden = options.EncoderHiddenSize ?? kv;
        return (options.NumVirtualTokens * kv) + (kv * hidden) + hidden + (hidden * output) + output;
    }

    /// <summary>
    /// Writes the adapter as a PEFT folder: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> holding
    /// <c>prompt_embeddings</c> = the encoder's output [T, layers·2·kv_dim] fp32; with a projection also
    /// <see cref="EncoderFileName"/>.
    /// </summary>
    /// <param name="directory">The folder; created when missing.</param>
    public override void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var model = RequireModel();
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            WriteEmbeddings(directory, encoder!.Encode().detach().contiguous());
        }

        if (encoder.HasProjection)
        {
            SafetensorsWriter.Write(Path.Combine(directory, EncoderFileName), encoder.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter)), SafetensorsWriter.DefaultMetadata);
        }

        PrefixTuningAdapterConfig.Write(directory, Options, model.Config);
    }

    /// <summary>
    /// Loads the prefix from a folder written by <see cref="Save"/> or by PEFT. Without projection that is
    /// <c>prompt_embeddings</c>; with projection the encoder's own weights from <see cref="EncoderFileName"/> (a PEFT
    /// folder holds only the MLP's output: open it with <see cref="FromPretrained"/> instead).
    /// </summary>
    /// <param name="directory">The folder.</param>
    /// <exception cref="CheckpointFormatException">A tensor is missing, has another shape, or other tensors are present.</exception>
    public override void Load(string directory)
    {
        RequireModel();
        if (!encoder!.HasProjection)
        {
            ReadEmbeddings(directory, encoder.EmbeddingWeight);
            return;
        }

        var path = Path.Combine(directory, EncoderFileName);
        if (!File.Exists(path))
        {
            throw new CheckpointFormatException(
                $"'{directory}' holds no {EncoderFileName}: a PEFT prefix-tuning folder saves only the projection's output, from which the MLP cannot be rebuilt. Load it for inference with PrefixTuningStrategy.FromPretrained (or AdapterLoader.Load).",
                path);
        }

        using var reader = new SafetensorsReader(path);
        var parameters = encoder.named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);
        reader.ReadExactly(
            parameters,
            extra => new CheckpointFormatException($"'{path}' has tensor '{extra[0]}', which the prefix encoder does not have.", path, extra[0]),
            missing => new CheckpointFormatException($"'{path}' lacks tensor '{missing[0]}' of the prefix encoder.", path, missing[0]),
            (name, info) => new CheckpointFormatException(
                $"Safetensors file '{path}': tensor '{name}' has shape {info.ShapeText} but the destination expects shape {SafetensorsTensorInfo.FormatShape(parameters[name].shape)}.", path, name));
    }

    /// <inheritdoc />
    private protected override nn.Module CreateEncoder(CausalLanguageModel model, StrategyContext context)
    {
        var config = model.Config;
        var hidden = Options.PrefixProjection ? Options.EncoderHiddenSize ?? (config.NumKeyValueHeads * config.HeadDim) : (int?)null;
        var created = new PrefixEncoder(Options.NumVirtualTokens, config.NumHiddenLayers, config.NumKeyValueHeads, config.HeadDim, hidden, model.Device);
        if (InitializeOnApply && model.Device.type != DeviceType.META)
        {
            created.Initialize(Options.Init, InitGenerator(model, Options.Seed));
        }

        return created;
    }

    /// <inheritdoc />
    private protected override void Attach(CausalLanguageModel model, nn.Module encoder)
    {
        this.encoder = (PrefixEncoder)encoder;
        model.SetAttentionPrefix(this.encoder);
    }

    /// <inheritdoc />
    private protected override void Detach(CausalLanguageModel model)
    {
        model.SetAttentionPrefix(null);
        encoder = null;
    }

}
