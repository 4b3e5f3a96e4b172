using FineTuning.Core.Backend;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// A LLaMA-family causal language model (Llama, Mistral, Qwen2) whose parameter names are exactly Hugging
/// Face's (<c>model.embed_tokens.weight</c>, <c>model.layers.{i}.self_attn.q_proj.weight</c>, …,
/// <c>lm_head.weight</c>), so checkpoints load without a mapping table.
/// </summary>
/// <remarks>
/// The graph exposes four seams for fine-tuning strategies: replaceable projections
/// (<see cref="LinearSlots"/>, <see cref="ReplaceModule"/>), an input-embeddings hook
/// (<see cref="InputEmbeddingsHook"/>), per-layer attention prefixes (<see cref="SetAttentionPrefix"/>) and
/// sublayer-output adapters (<see cref="DecoderLayer.AttentionOutputAdapter"/>, <see cref="DecoderLayer.MlpOutputAdapter"/>).
/// </remarks>
public sealed class CausalLanguageModel : nn.Module<ModelInput, ModelOutput>, IReplaceableChildren
{
#pragma warning disable IDE1006 // field names are Hugging Face's parameter names
    private readonly DecoderStack model;
    private nn.Module<Tensor, Tensor> lm_head;
#pragma warning restore IDE1006
    private readonly ChildSlots slots;
    private IAttentionPrefixSource? attentionPrefix;

    private CausalLanguageModel(ModelConfig config, Device device, ScalarType dtype, Device? projectionDevice = null) : base(nameof(CausalLanguageModel))
    {
        Config = config;
        DType = dtype;
        Device = device;
        model = new DecoderStack(config, device, dtype, projectionDevice);
        lm_head = config.TieWordEmbeddings
            ? new TiedLinear(model.EmbedTokens)
            : nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
        slots = new ChildSlots(this, (_, module) => lm_head = module);
        slots.Add("lm_head", lm_head);
    }

    /// <summary>Builds a model with freshly initialised weights.</summary>
    /// <param name="config">The architecture.</param>
    /// <param name="device">Where to build it (<c>cpu</c>, <c>cuda:0</c>, or <c>meta</c> to count parameters without memory); default CPU.</param>
    /// <param name="dtype">Weight dtype (fp32, bf16 or fp16); default the config's <c>torch_dtype</c>.</param>
    /// <returns>The model, in evaluation mode.</returns>
    public static CausalLanguageModel Create(ModelConfig config, Device? device = null, ScalarType? dtype = null)
    {
        var result = new CausalLanguageModel(config, device ?? CPU, CheckedDType(config, dtype));
        result.eval();
        return result;
    }

    /// <summary>
    /// Builds a model whose decoder projections are placeholders on the meta device (no memory) and everything else
    /// on <paramref name="device"/>: for loaders that put other modules (4-bit layers) in those slots, so the
    /// full-precision projections are never allocated.
    /// </summary>
    internal static CausalLanguageModel CreateWithProjectionPlaceholders(ModelConfig config, Device device, ScalarType? dtype)
    {
        var result = new CausalLanguageModel(config, device, CheckedDType(config, dtype), projectionDevice: META);
        result.eval();
        return result;
    }

    private static ScalarType CheckedDType(ModelConfig config, ScalarType? dtype)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        TorchBackend.EnsureAvailable();
        var type = dtype ?? config.DefaultScalarType;
        if (type is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw new ArgumentException($"Model dtype must be Float32, BFloat16 or Float16, got {type}.", nameof(dtype));
        }

        return type;
    }

    /// <summary>The architecture.</summary>
    public ModelConfig Config { get; }

    /// <summary>The dtype the weights were built in.</summary>
    public ScalarType DType { get; }

    /// <summary>The device the weights were built on.</summary>
    public Device Device { get; }

    /// <summary>The transformer body (embeddings, layers, final norm).</summary>
    public DecoderStack Body => model;

    /// <summary>The output projection (a Linear, or a wrapper around one).</summary>
    public nn.Module<Tensor, Tensor> LmHead => lm_head;

    /// <summary>Seam 2: prepends virtual-token embeddings to every input (prompt tuning), or <c>null</c>.</summary>
    public IInputEmbeddingsHook? InputEmbeddingsHook { get; set; }

    /// <summary>Seam 3: the prefix source every attention layer uses, or <c>null</c>.</summary>
    public IAttentionPrefixSource? AttentionPrefix => attentionPrefix;

    /// <inheritdoc />
    public IReadOnlyList<string> ReplaceableChildNames => slots.Names;

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> GetChild(string name) => slots.Get(name);

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement) => slots.Replace(name, replacement);

    /// <summary>Sets (or clears, with <c>null</c>) the key/value prefix source of every attention layer.</summary>
    /// <param name="source">The prefix source.</param>
    public void SetAttentionPrefix(IAttentionPrefixSource? source)
    {
        attentionPrefix = source;
        foreach (var layer in model.Layers)
        {
            layer.SelfAttention.Prefix = source;
        }
    }

    /// <summary>
    /// Seam 1: every replaceable projection with its full name — the seven projections of each layer and
    /// <c>lm_head</c> — in module order.
    /// </summary>
    /// <returns>The slots.</returns>
    public IReadOnlyList<LinearSlot> LinearSlots()
    {
        var result = new List<LinearSlot>();
        foreach (var (name, module) in named_modules().Prepend(("", this)))
        {
            if (module is IReplaceableChildren parent)
            {
                var prefix = name.Length == 0 ? "" : name + ".";
                result.AddRange(parent.ReplaceableChildNames.Select(child => new LinearSlot(prefix + child, parent, child, parent.GetChild(child))));
            }
        }

        return result;
    }

    /// <summary>Replaces the module at a full name (for example <c>model.layers.3.mlp.down_proj</c>) and returns the old one.</summary>
    /// <param name="fullName">The slot's full name, as listed by <see cref="LinearSlots"/>.</param>
    /// <param name="replacement">The new module.</param>
    /// <returns>The module that was in the slot (not disposed).</returns>
    /// <exception cref="ArgumentException">No replaceable slot has that name.</exception>
    public nn.Module<Tensor, Tensor> ReplaceModule(string fullName, nn.Module<Tensor, Tensor> replacement)
    {
        var slot = LinearSlots().FirstOrDefault(s => s.FullName == fullName)
            ?? throw new ArgumentException($"No replaceable module named '{fullName}'.", nameof(fullName));
        return slot.Parent.ReplaceChild(slot.ChildName, replacement);
    }

    /// <summary>
    /// Counts trainable and total parameters (each shared tensor once, as PEFT does). A 4-bit projection counts as
    /// in·out frozen parameters (PEFT counts a bitsandbytes <c>Params4bit</c> as twice its packed bytes), so quantizing
    /// leaves the total unchanged.
    /// </summary>
    /// <returns>The counts.</returns>
    public ParameterSummary CountParameters()
    {
        long trainable = 0, total = 0;
        foreach (var (_, p) in named_parameters())
        {
            total += p.numel();
            if (p.requires_grad)
            {
                trainable += p.numel();
            }
        }

        foreach (var (_, module) in named_modules())
        {
            if (module is Quantization.IQuantizedLinear quantized)
            {
                total += quantized.InFeatures * quantized.OutFeatures;
            }
        }

        return new ParameterSummary(trainable, total);
    }

    /// <summary>
    /// Re-initialises all weights as Hugging Face does for a fresh model: Linear and embedding weights from
    /// N(0, <paramref name="std"/>²), biases zero, norm weights one.
    /// </summary>
    /// <param name="seed">Seed for the random generator.</param>
    /// <param name="std">Standard deviation (<c>initializer_range</c>, 0.02 by default).</param>
    public void InitializeWeights(long seed, double std = 0.02)
    {
        var generator = new Generator((ulong)seed, Device.type == DeviceType.META ? CPU : Device);
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
        {
            if (name.EndsWith("norm.weight", StringComparison.Ordinal))
            {
                p.fill_(1.0);
            }
            else if (name.EndsWith(".bias", StringComparison.Ordinal))
            {
                p.zero_();
            }
            else
            {
                p.normal_(0.0, std, generator);
            }
        }
    }

    /// <inheritdoc />
    public override ModelOutput forward(ModelInput input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        var embeddings = Embed(input);
        var batch = embeddings.shape[0];
        var seq = embeddings.shape[1];
        var cache = input.Cache;
        var past = cache?.Length ?? 0;
        var padding = input.AttentionMask;
        var positions = input.PositionIds;

        var virtualTokens = 0;
        if (input.SequenceIds is { } sequenceIds && (sequenceIds.dim() != 2 || sequenceIds.shape[0] != batch || sequenceIds.shape[1] != seq || past != 0 || InputEmbeddingsHook is not null))
        {
            throw new ArgumentException($"SequenceIds must be [batch={batch}, seq={seq}] with no cached positions and no input-embeddings hook, got [{string.Join(", ", sequenceIds.shape)}] with {past} cached.", nameof(input));
        }

        if (InputEmbeddingsHook is { } hook && past == 0)
        {
            virtualTokens = hook.VirtualTokenCount;
            embeddings = cat([hook.GetVirtualEmbeddings(batch, embeddings.dtype), embeddings], dim: 1);
            if (cache is not null)
            {
                cache.VirtualTokenCount = virtualTokens;
            }

            padding = padding is null ? null : cat([ones(batch, virtualTokens, dtype: padding.dtype, device: padding.device), padding], dim: 1);
            positions = positions is null ? null : cat([arange(virtualTokens, device: positions.device).expand(batch, virtualTokens), positions + virtualTokens], dim: 1);
        }
        else if (cache is { VirtualTokenCount: > 0 } withVirtual)
        {
            if (padding is not null && padding.shape[1] == past + seq - withVirtual.VirtualTokenCount)
            {
                padding = cat([ones(batch, withVirtual.VirtualTokenCount, dtype: padding.dtype, device: padding.device), padding], dim: 1);
            }

            positions = positions is null ? null : positions + withVirtual.VirtualTokenCount;
        }

        var totalSeq = seq + virtualTokens;
        if (padding is not null && (padding.dim() != 2 || padding.shape[0] != batch || padding.shape[1] != past + totalSeq))
        {
            throw new ArgumentException($"AttentionMask must be [batch={batch}, past+seq={past + totalSeq - virtualTokens}], got [{string.Join(", ", padding.shape)}].", nameof(input));
        }

        // As with Hugging Face's past_key_values, prefix positions come first: real tokens start after them.
        var prefixLength = attentionPrefix?.PrefixLength ?? 0;
        positions = positions is null
            ? arange(prefixLength + past, prefixLength + past + totalSeq, dtype: ScalarType.Int64, device: embeddings.device).expand(batch, totalSeq)
            : positions + prefixLength;
        var (cos, sin) = model.Rotary.Compute(positions);
        var (mask, isCausal) = AttentionMaskBuilder.Build(batch, totalSeq, past, prefixLength, padding, Config.SlidingWindow, embeddings.device, input.SequenceIds);
        var context = new AttentionContext(cos, sin, mask, isCausal, cache);

        var hidden = embeddings;
        foreach (var layer in model.Layers)
        {
            hidden = RunLayer(layer, hidden, context);
        }

        hidden = model.Norm.call(hidden);
        if (virtualTokens > 0)
        {
            hidden = hidden.narrow(1, virtualTokens, seq);
        }

        if (input.LastPositionLogitsOnly)
        {
            hidden = hidden.narrow(1, hidden.shape[1] - 1, 1);
        }

        var logits = lm_head.call(hidden).to(ScalarType.Float32);
        return new ModelOutput(logits.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Runs one decoder layer; a training strategy may route it through activation checkpointing.
    /// </summary>
    /// <param name="layer">The layer.</param>
    /// <param name="hidden">The residual stream.</param>
    /// <param name="context">Shared per-pass state.</param>
    /// <returns>The layer's output.</returns>
    private Tensor RunLayer(DecoderLayer layer, Tensor hidden, AttentionContext context) =>
        LayerRunner is { } runner ? runner(layer, hidden, context) : layer.Forward(hidden, context);

    /// <summary>
    /// Optional replacement for running a decoder layer (the trainer installs activation checkpointing here);
    /// <c>null</c> runs layers directly.
    /// </summary>
    public Func<DecoderLayer, Tensor, AttentionContext, Tensor>? LayerRunner { get; set; }

    private Tensor Embed(ModelInput input)
    {
        if ((input.InputIds is null) == (input.InputEmbeddings is null))
        {
            throw new ArgumentException("Set exactly one of InputIds and InputEmbeddings.", nameof(input));
        }

        if (input.InputEmbeddings is { } given)
        {
            if (given.dim() != 3 || given.shape[2] != Config.HiddenSize)
            {
                throw new ArgumentException($"InputEmbeddings must be [batch, seq, {Config.HiddenSize}], got [{string.Join(", ", given.shape)}].", nameof(input));
            }

            return given.alias();
        }

        var ids = input.InputIds!;
        if (ids.dim() != 2 || ids.dtype != ScalarType.Int64)
        {
            throw new ArgumentException($"InputIds must be a 2-D int64 tensor [batch, seq], got {ids.dtype} [{string.Join(", ", ids.shape)}].", nameof(input));
        }

        return model.EmbedTokens.call(ids);
    }
}
