using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// The transformer body (Hugging Face's <c>model</c>): token embeddings, the decoder layers and the final norm.
/// Its parameter names are <c>embed_tokens.weight</c>, <c>layers.{i}.…</c> and <c>norm.weight</c>.
/// </summary>
public sealed class DecoderStack : nn.Module
{
#pragma warning disable IDE1006 // field names are Hugging Face's parameter names
    private readonly Embedding embed_tokens;
    private readonly ModuleList<DecoderLayer> layers;
    private readonly RmsNorm norm;
    private readonly RotaryEmbedding rotary_emb;
#pragma warning restore IDE1006
    private readonly IReadOnlyList<DecoderLayer> layerList;

    /// <summary>Creates the body for a configuration.</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="device">Where the weights live.</param>
    /// <param name="dtype">The weight dtype.</param>
    /// <param name="projectionDevice">Where the projection Linears are built, when not on <paramref name="device"/> (<c>meta</c> for placeholders a loader replaces).</param>
    public DecoderStack(ModelConfig config, Device device, ScalarType dtype, Device? projectionDevice = null) : base(nameof(DecoderStack))
    {
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize, device: device, dtype: dtype);
        var built = Enumerable.Range(0, config.NumHiddenLayers).Select(i => new DecoderLayer(config, i, device, dtype, projectionDevice)).ToArray();
        layers = nn.ModuleList(built);
        layerList = built;
        norm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        rotary_emb = new RotaryEmbedding(config, device);
        RegisterComponents();
    }

    /// <summary>The token embedding table (seam 2 reads it, e.g. prompt tuning's text initialisation).</summary>
    public Embedding EmbedTokens => embed_tokens;

    /// <summary>The decoder layers in order.</summary>
    public IReadOnlyList<DecoderLayer> Layers => layerList;

    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;

    /// <summary>The rotary position table.</summary>
    public RotaryEmbedding Rotary => rotary_emb;
}
