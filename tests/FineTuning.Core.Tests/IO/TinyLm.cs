using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

#pragma warning disable IDE1006 // Field names are the Hugging Face tensor names.

/// <summary>
/// A tiny LLaMA-shaped module tree: <c>model.embed_tokens</c>, <c>model.layers.{i}.self_attn.q_proj</c> /
/// <c>mlp.up_proj</c>, <c>model.norm</c>, a persistent int buffer, a non-persistent <c>inv_freq</c>, and
/// <c>lm_head</c> (optionally tied to the embedding).
/// </summary>
internal sealed class TinyLm : nn.Module<Tensor, Tensor>
{
    public const int Vocab = 16;
    public const int Hidden = 8;
    public const int Layers = 2;

    private readonly TinyBody model;
    private readonly Linear lm_head;

    public TinyLm(bool tied = false, ScalarType dtype = ScalarType.Float32, Device? device = null)
        : base(nameof(TinyLm))
    {
        model = new TinyBody(dtype, device);
        lm_head = nn.Linear(Hidden, Vocab, hasBias: false, device: device, dtype: dtype);
        if (tied)
        {
            lm_head.weight = model.embed_tokens.weight!;
        }

        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => lm_head.forward(model.forward(input));
}

internal sealed class TinyBody : nn.Module<Tensor, Tensor>
{
    public readonly Embedding embed_tokens;
    private readonly ModuleList<TinyLayer> layers;
    private readonly TinyNorm norm;
    private readonly Tensor step_counts;
    private readonly Tensor inv_freq;

    public TinyBody(ScalarType dtype, Device? device)
        : base(nameof(TinyBody))
    {
        embed_tokens = nn.Embedding(TinyLm.Vocab, TinyLm.Hidden, device: device, dtype: dtype);
        layers = nn.ModuleList(Enumerable.Range(0, TinyLm.Layers).Select(_ => new TinyLayer(dtype, device)).ToArray());
        norm = new TinyNorm(dtype, device);
        step_counts = torch.arange(0, 3, dtype: ScalarType.Int64, device: device);
        inv_freq = torch.ones(TinyLm.Hidden / 2, dtype: ScalarType.Float32, device: device);
        register_buffer(nameof(inv_freq), inv_freq, persistent: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input)
    {
        var hidden = embed_tokens.forward(input);
        foreach (var layer in layers)
        {
            hidden = layer.forward(hidden);
        }

        return norm.forward(hidden);
    }
}

internal sealed class TinyLayer : nn.Module<Tensor, Tensor>
{
    private readonly TinyAttention self_attn;
    private readonly TinyMlp mlp;

    public TinyLayer(ScalarType dtype, Device? device)
        : base(nameof(TinyLayer))
    {
        self_attn = new TinyAttention(dtype, device);
        mlp = new TinyMlp(dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => mlp.forward(self_attn.forward(input));
}

internal sealed class TinyAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear q_proj;

    public TinyAttention(ScalarType dtype, Device? device)
        : base(nameof(TinyAttention))
    {
        q_proj = nn.Linear(TinyLm.Hidden, TinyLm.Hidden, hasBias: true, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => q_proj.forward(input);
}

internal sealed class TinyMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear up_proj;

    public TinyMlp(ScalarType dtype, Device? device)
        : base(nameof(TinyMlp))
    {
        up_proj = nn.Linear(TinyLm.Hidden, TinyLm.Hidden, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => up_proj.forward(input);
}

internal sealed class TinyNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public TinyNorm(ScalarType dtype, Device? device)
        : base(nameof(TinyNorm))
    {
        weight = nn.Parameter(torch.rand(TinyLm.Hidden, dtype: dtype, device: device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor input) => input * weight;
}
