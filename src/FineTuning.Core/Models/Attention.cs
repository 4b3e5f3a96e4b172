using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Grouped-query self-attention with rotary embeddings, computed by <c>scaled_dot_product_attention</c>.
/// Children <c>q_proj</c>, <c>k_proj</c>, <c>v_proj</c>, <c>o_proj</c> are replaceable (seam 1) and an
/// optional <see cref="IAttentionPrefixSource"/> joins learned keys/values in front (seam 3).
/// </summary>
public sealed class Attention : nn.Module, IReplaceableChildren
{
#pragma warning disable IDE1006 // field names are Hugging Face's parameter names
    private nn.Module<Tensor, Tensor> q_proj;
    private nn.Module<Tensor, Tensor> k_proj;
    private nn.Module<Tensor, Tensor> v_proj;
    private nn.Module<Tensor, Tensor> o_proj;
#pragma warning restore IDE1006
    private readonly ChildSlots slots;
    private readonly int layerIndex;
    private readonly int heads;
    private readonly int kvHeads;
    private readonly int headDim;

    /// <summary>Creates the attention of one decoder layer.</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="layerIndex">Index of the decoder layer (for the KV cache and prefixes).</param>
    /// <param name="device">Where the weights live.</param>
    /// <param name="dtype">The weight dtype.</param>
    /// <param name="projectionDevice">Where the projection Linears are built, when not on <paramref name="device"/> (<c>meta</c> for placeholders a loader replaces).</param>
    public Attention(ModelConfig config, int layerIndex, Device device, ScalarType dtype, Device? projectionDevice = null) : base(nameof(Attention))
    {
        this.layerIndex = layerIndex;
        heads = config.NumAttentionHeads;
        kvHeads = config.NumKeyValueHeads;
        headDim = config.HeadDim;
        q_proj = nn.Linear(config.HiddenSize, heads * headDim, hasBias: config.QkvBias, device: projectionDevice ?? device, dtype: dtype);
        k_proj = nn.Linear(config.HiddenSize, kvHeads * headDim, hasBias: config.QkvBias, device: projectionDevice ?? device, dtype: dtype);
        v_proj = nn.Linear(config.HiddenSize, kvHeads * headDim, hasBias: config.QkvBias, device: projectionDevice ?? device, dtype: dtype);
        o_proj = nn.Linear(heads * headDim, config.HiddenSize, hasBias: config.OutputProjectionBias, device: projectionDevice ?? device, dtype: dtype);
        RegisterComponents();
        slots = new ChildSlots(this, (name, module) =>
        {
            switch (name)
            {
                case "q_proj": q_proj = module; break;
                case "k_proj": k_proj = module; break;
                case "v_proj": v_proj = module; break;
                case "o_proj": o_proj = module; break;
            }
        });
        slots.Add("q_proj", q_proj);
        slots.Add("k_proj", k_proj);
        slots.Add("v_proj", v_proj);
        slots.Add("o_proj", o_proj);
    }

    /// <summary>Learned key/value prefixes joined in front of the keys (prefix tuning), or <c>null</c>.</summary>
    public IAttentionPrefixSource? Prefix { get; set; }

    /// <inheritdoc />
    public IReadOnlyList<string> ReplaceableChildNames => slots.Names;

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> GetChild(string name) => slots.Get(name);

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement) => slots.Replace(name, replacement);

    /// <summary>Attends from the new positions over prefix, cached and new positions.</summary>
    /// <param name="hidden">Normalised hidden states, [batch, seq, hidden].</param>
    /// <param name="context">Rotary tables, mask and cache shared by all layers.</param>
    /// <returns>The attention output after <c>o_proj</c>, [batch, seq, hidden].</returns>
    public Tensor Forward(Tensor hidden, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        var batch = hidden.shape[0];
        var seq = hidden.shape[1];
        var q = q_proj.call(hidden).view(batch, seq, heads, headDim).transpose(1, 2);
        var k = k_proj.call(hidden).view(batch, seq, kvHeads, headDim).transpose(1, 2);
        var v = v_proj.call(hidden).view(batch, seq, kvHeads, headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, context.Cos, context.Sin);
        k = RotaryEmbedding.Apply(k, context.Cos, context.Sin);
        if (context.Cache is { } cache)
        {
            (k, v) = cache.Append(layerIndex, k, v);
        }

        if (Prefix is { } prefix)
        {
            var (prefixKeys, prefixValues) = prefix.GetPrefix(layerIndex, batch, k.dtype);
            k = cat([prefixKeys, k], dim: 2);
            v = cat([prefixValues, v], dim: 2);
        }

        if (kvHeads != heads)
        {
            k = k.repeat_interleave(heads / kvHeads, dim: 1);
            v = v.repeat_interleave(heads / kvHeads, dim: 1);
        }

        var attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: context.Mask, is_casual: context.IsCausal);
        var merged = attended.transpose(1, 2).reshape(batch, seq, heads * headDim);
        return o_proj.call(merged).MoveToOuterDisposeScope();
    }
}
