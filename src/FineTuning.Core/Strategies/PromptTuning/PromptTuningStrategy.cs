using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.PromptTuning;

/// <summary>
/// Prompt tuning (Lester et al. 2021) with Hugging Face PEFT's semantics: T trainable fp32 virtual-token embeddings
/// [T, hidden] (<c>prompt_encoder.default.embedding.weight</c>) are prepended to every input through the model's
/// input-embeddings hook; the model extends the padding mask over them, runs them through every layer, and drops their
/// logits, so labels and masks stay aligned with the caller's tokens. The base model is frozen. Saved as a PEFT folder:
/// <c>adapter_config.json</c> (<c>PROMPT_TUNING</c>) and <c>adapter_model.safetensors</c> with the single tensor
/// <c>prompt_embeddings</c> [T, hidden] fp32.
/// </summary>
/// <remarks>
/// Packed rows cannot carry virtual tokens (each packed example would need its own), so the trainer refuses
/// <c>TrainingOptions.Packing</c> with it. Activation checkpointing and KV-cache generation work unchanged.
/// </remarks>
public sealed class PromptTuningStrategy : PromptLearningStrategy
{
    private PromptEmbedding? embedding;

    /// <summary>Creates the strategy.</summary>
    /// <param name="options">The options; <see cref="PromptTuningOptions.Default"/> when omitted.</param>
    /// <exception cref="InvalidOptionException">An option is invalid.</exception>
    public PromptTuningStrategy(PromptTuningOptions? options = null)
        : this(options ?? PromptTuningOptions.Default, trainable: true, initialize: true)
    {
    }

    private PromptTuningStrategy(PromptTuningOptions options, bool trainable, bool initialize) : base(trainable, initialize)
    {
        options.Validate();
        Options = options;
    }

    /// <summary>The options.</summary>
    public PromptTuningOptions Options { get; }

    /// <inheritdoc />
    public override string Method => "prompt";

    /// <summary>The virtual-token table, or <c>null</c> when the strategy is not applied.</summary>
    public PromptEmbedding? Embedding => embedding;

    /// <summary>
    /// Applies a saved prompt-tuning adapter (a folder written by <see cref="Save"/> or by PEFT) to a base model, as
    /// PEFT's <c>PeftModel.from_pretrained</c> does: no init is run (no tokenizer needed), the saved
    /// <c>prompt_embeddings</c> are loaded. On failure the model is left as it was.
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="isTrainable">Leave the virtual tokens trainable (to continue training).</param>
    /// <param name="logger">Receives warnings such as ignored config keys.</param>
    /// <returns>The applied strategy.</returns>
    /// <exception cref="CheckpointFormatException">The config or the tensor does not fit the model.</exception>
    /// <exception cref="NotSupportedException">The config is for another method or task.</exception>
    public static PromptTuningStrategy FromPretrained(string directory, CausalLanguageModel model, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var (options, dimensions) = PromptTuningAdapterConfig.Read(directory, logger ?? NullLogger.Instance);
        var path = Path.Combine(directory, AdapterLoader.ConfigFileName);
        PromptLearningConfig.Expect(path, "token_dim", dimensions.TokenDim, model.Config.HiddenSize, "hidden_size");
        PromptLearningConfig.Expect(path, "num_layers", dimensions.NumLayers, model.Config.NumHiddenLayers, "num_hidden_layers");
        var strategy = new PromptTuningStrategy(options, isTrainable, initialize: false);
        return AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.Load(directory));
    }

    /// <summary>
    /// PEFT's TEXT init ids: the text's ids cut to <paramref name="virtualTokens"/> when longer, else repeated
    /// ⌈T/len⌉ times and cut.
    /// </summary>
    /// <param name="textIds">The tokenized text (at least one id).</param>
    /// <param name="virtualTokens">T.</param>
    /// <returns>T ids.</returns>
    public static IReadOnlyList<int> TextInitIds(IReadOnlyList<int> textIds, int virtualTokens)
    {
        ArgumentNullException.ThrowIfNull(textIds);
        ArgumentOutOfRangeException.ThrowIfZero(textIds.Count);
        var repeats = (virtualTokens + textIds.Count - 1) / textIds.Count;
        return Enumerable.Repeat(textIds, Math.Max(1, repeats)).SelectMany(ids => ids).Take(virtualTokens).ToArray();
    }

    /// <summary>
    /// Writes the adapter as a PEFT folder: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c> holding
    /// <c>prompt_embeddings</c> [T, hidden] in fp32, exactly as PEFT's <c>get_prompt_embedding_to_save</c> returns it.
    /// </summary>
    /// <param name="directory">The folder; created when missing.</param>
    public override void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        var model = RequireModel();
        WriteEmbeddings(directory, embedding!.Weight);
        PromptTuningAdapterConfig.Write(directory, Options, model.Config);
    }

    /// <summary>Loads <c>prompt_embeddings</c> from a folder written by <see cref="Save"/> or by PEFT.</summary>
    /// <param name="directory">The folder.</param>
    /// <exception cref="CheckpointFormatException">The tensor is missing, has another shape, or other tensors are present.</exception>
    public override void Load(string directory)
    {
        RequireModel();
        ReadEmbeddings(directory, embedding!.Weight);
    }

    /// <inheritdoc />
    private protected override nn.Module CreateEncoder(CausalLanguageModel model, StrategyContext context)
    {
        var created = new PromptEmbedding(Options.NumVirtualTokens, model.Config.HiddenSize, model.Device);
        try
        {
            if (InitializeOnApply && model.Device.type != DeviceType.META)
            {
                Initialize(created, model, context);
            }
        }
        catch
        {
            created.Dispose();
            throw;
        }

        return created;
    }

    /// <inheritdoc />
    private protected override void Attach(CausalLanguageModel model, nn.Module encoder)
    {
        embedding = (PromptEmbedding)encoder;
        model.InputEmbeddingsHook = embedding;
    }

    /// <inheritdoc />
    private protected override void Detach(CausalLanguageModel model)
    {
        model.InputEmbeddingsHook = null;
        embedding = null;
    }


    private void Initialize(PromptEmbedding table, CausalLanguageModel model, StrategyContext context)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var weight = table.Weight;
        var vocabulary = model.Config.VocabSize;
        switch (Options.Init)
        {
            case PromptTuningInit.Random:
                weight.normal_(0, 1, InitGenerator(model, Options.Seed));
                return;
            case PromptTuningInit.SampleVocab:
                var sampled = randint(0, vocabulary, [Options.NumVirtualTokens], dtype: ScalarType.Int64, generator: new Generator((ulong)Options.Seed));
                weight.copy_(model.Body.EmbedTokens.call(sampled.to(model.Device)).to(ScalarType.Float32));
                return;
            case PromptTuningInit.Text:
                var tokenizer = context.Tokenizer ?? throw new InvalidOptionException(
                    $"{nameof(PromptTuningOptions)}.{nameof(PromptTuningOptions.Init)}",
                    "Text init needs the model's tokenizer (StrategyContext.Tokenizer; the builder and the CLI pass it).");
                var textIds = tokenizer.Encode(Options.InitText!, addSpecialTokens: true);
                if (textIds.Count == 0)
                {
                    throw new InvalidOptionException($"{nameof(PromptTuningOptions)}.{nameof(PromptTuningOptions.InitText)}", $"'{Options.InitText}' encodes to no token.");
                }

                if (textIds.FirstOrDefault(id => id < 0 || id >= vocabulary, -1) is var outside and not -1)
                {
                    throw new InvalidOptionException($"{nameof(PromptTuningOptions)}.{nameof(PromptTuningOptions.InitText)}", $"encodes to token id {outside}, outside the model's vocabulary of {vocabulary}; is the tokenizer the model's?");
                }

                var ids = TextInitIds(textIds, Options.NumVirtualTokens).Select(id => (long)id).ToArray();
                weight.copy_(model.Body.EmbedTokens.call(tensor(ids, dtype: ScalarType.Int64, device: model.Device)).to(ScalarType.Float32));
                return;
            default:
                throw new InvalidOperationException($"Unknown init {Options.Init}.");
        }
    }
}
