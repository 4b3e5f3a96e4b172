using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// One pre-norm transformer block: <c>h + attn(norm(h))</c>, then <c>h + mlp(norm(h))</c>. Seam 4: optional
/// adapters transform each sublayer's output before it is added to the residual stream (an
/// <see cref="IResidualAwareAdapter"/> also reads that residual stream).
/// </summary>
public sealed class DecoderLayer : nn.Module
{
#pragma warning disable IDE1006 // field names are Hugging Face's parameter names
    private readonly RmsNorm input_layernorm;
    private readonly Attention self_attn;
    private readonly RmsNorm post_attention_layernorm;
    private readonly GatedMlp mlp;
#pragma warning restore IDE1006
    private nn.Module<Tensor, Tensor>? attentionAdapter;
    private nn.Module<Tensor, Tensor>? mlpAdapter;

    /// <summary>Name under which an attention-output adapter is registered.</summary>
    public const string AttentionAdapterName = "attention_adapter";

    /// <summary>Name under which an MLP-output adapter is registered.</summary>
    public const string MlpAdapterName = "mlp_adapter";

    /// <summary>Creates decoder layer <paramref name="layerIndex"/>.</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="layerIndex">The layer's index.</param>
    /// <param name="device">Where the weights live.</param>
    /// <param name="dtype">The weight dtype.</param>
    /// <param name="projectionDevice">Where the projection Linears are built, when not on <paramref name="device"/> (<c>meta</c> for placeholders a loader replaces).</param>
    public DecoderLayer(ModelConfig config, int layerIndex, Device device, ScalarType dtype, Device? projectionDevice = null) : base(nameof(DecoderLayer))
    {
        LayerIndex = layerIndex;
        input_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        self_attn = new Attention(config, layerIndex, device, dtype, projectionDevice);
        post_attention_layernorm = new RmsNorm(config.HiddenSize, config.RmsNormEps, device, dtype);
        mlp = new GatedMlp(config, device, dtype, projectionDevice);
        RegisterComponents();
    }

    /// <summary>The layer's index in the stack.</summary>
    public int LayerIndex { get; }

    /// <summary>The self-attention sublayer (q/k/v/o slots, prefix seam).</summary>
    public Attention SelfAttention => self_attn;

    /// <summary>The MLP sublayer (gate/up/down slots).</summary>
    public GatedMlp Mlp => mlp;

    /// <summary>
    /// An adapter applied to the attention output before the residual add (Houlsby placement), or <c>null</c>.
    /// Setting it registers the module as <c>attention_adapter</c>.
    /// </summary>
    public nn.Module<Tensor, Tensor>? AttentionOutputAdapter
    {
        get => attentionAdapter;
        set => attentionAdapter = SetAdapter(AttentionAdapterName, attentionAdapter, value);
    }

    /// <summary>
    /// An adapter applied to the MLP output before the residual add (Pfeiffer and Houlsby placement), or <c>null</c>.
    /// Setting it registers the module as <c>mlp_adapter</c>.
    /// </summary>
    public nn.Module<Tensor, Tensor>? MlpOutputAdapter
    {
        get => mlpAdapter;
        set => mlpAdapter = SetAdapter(MlpAdapterName, mlpAdapter, value);
    }

    /// <summary>Runs the block.</summary>
    /// <param name="hidden">The residual stream, [batch, seq, hidden].</param>
    /// <param name="context">Rotary tables, mask and cache shared by all layers.</param>
    /// <returns>The new residual stream.</returns>
    public Tensor Forward(Tensor hidden, AttentionContext context)
    {
        using var scope = NewDisposeScope();
        var attended = self_attn.Forward(input_layernorm.call(hidden), context);
        if (attentionAdapter is not null)
        {
            attended = attentionAdapter is IResidualAwareAdapter aware ? aware.Forward(attended, hidden) : attentionAdapter.call(attended);
        }

        hidden = hidden + attended;
        var transformed = mlp.call(post_attention_layernorm.call(hidden));
        if (mlpAdapter is not null)
        {
            transformed = mlpAdapter is IResidualAwareAdapter aware ? aware.Forward(transformed, hidden) : mlpAdapter.call(transformed);
        }

        return (hidden + transformed).MoveToOuterDisposeScope();
    }

    private nn.Module<Tensor, Tensor>? SetAdapter(string name, nn.Module<Tensor, Tensor>? current, nn.Module<Tensor, Tensor>? value)
    {
        if (ReferenceEquals(current, value))
        {
            return value;
        }

        if (current is not null)
        {
            register_module(name, null!); // TorchSharp's way to unregister a child
        }

        if (value is not null)
        {
            register_module(name, value);
        }

        return value;
    }
}
