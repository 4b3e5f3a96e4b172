using FineTuning.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.PrefixTuning;

/// <summary>
/// PEFT's <c>PrefixEncoder</c> and the model's attention-prefix source. Without projection the parameter
/// <c>embedding.weight</c> [T, layers·2·kv_dim] is the key/value prefix itself; with projection
/// <c>embedding.weight</c> [T, kv_dim] goes through <c>transform</c> = Linear(kv_dim → hidden), Tanh,
/// Linear(hidden → layers·2·kv_dim). The output row of a virtual token is laid out as PEFT's
/// <c>view(T, layers·2, kv_heads, head_dim)</c>: layer i's keys at index 2i, its values at 2i+1.
/// </summary>
/// <remarks>
/// kv_dim = kv_heads × head_dim, so grouped-query models get prefixes of their key/value width (PEFT issue #1901).
/// A layer computes only its own slice (with projection, only its rows of the last Linear), which equals slicing the
/// full output.
/// </remarks>
public sealed class PrefixEncoder : nn.Module, IAttentionPrefixSource
{
#pragma warning disable IDE1006 // field names are PEFT's parameter names
    private readonly Embedding embedding;
    private readonly Sequential? transform;
#pragma warning restore IDE1006
    private readonly Linear? down;
    private readonly Linear? up;
    private readonly int kvHeads;
    private readonly int headDim;

    /// <summary>Creates the encoder with PyTorch's default init (embedding N(0, 1), Linear U(±1/√fan_in)) from the global generator.</summary>
    /// <param name="virtualTokens">T.</param>
    /// <param name="layers">Decoder layers.</param>
    /// <param name="kvHeads">Key/value heads.</param>
    /// <param name="headDim">Width of one head.</param>
    /// <param name="encoderHiddenSize">The MLP's hidden width, or <c>null</c> for no projection.</param>
    /// <param name="device">Where the parameters live (fp32).</param>
    public PrefixEncoder(int virtualTokens, int layers, int kvHeads, int headDim, int? encoderHiddenSize, Device device) : base(nameof(PrefixEncoder))
    {
        this.kvHeads = kvHeads;
        this.headDim = headDim;
        Layers = layers;
        var kvDim = kvHeads * headDim;
        var output = layers * 2 * kvDim;
        if (encoderHiddenSize is { } hidden)
        {
            embedding = nn.Embedding(virtualTokens, kvDim, device: device, dtype: ScalarType.Float32);
            down = nn.Linear(kvDim, hidden, device: device, dtype: ScalarType.Float32);
            up = nn.Linear(hidden, output, device: device, dtype: ScalarType.Float32);
            transform = nn.Sequential(down, nn.Tanh(), up);
        }
        else
        {
            embedding = nn.Embedding(virtualTokens, output, device: device, dtype: ScalarType.Float32);
        }

        RegisterComponents();
    }

    /// <summary>Whether the prefix is reparameterized through the MLP.</summary>
    public bool HasProjection => transform is not null;

    /// <summary>Decoder layers served.</summary>
    public int Layers { get; }

    /// <summary>The embedding (the prefix itself without projection).</summary>
    public Parameter EmbeddingWeight => embedding.weight!;

    /// <summary>The MLP's two Linear layers, or <c>null</c> without projection.</summary>
    public (Linear Down, Linear Up)? Projection => down is null ? null : (down, up!);

    /// <inheritdoc />
    public int PrefixLength => (int)EmbeddingWeight.shape[0];

    /// <summary>
    /// The encoder's output for the T virtual tokens, [T, layers·2·kv_dim] fp32 — what PEFT's
    /// <c>get_prompt_embedding_to_save</c> returns and saves as <c>prompt_embeddings</c>.
    /// </summary>
    /// <returns>The output (in the current dispose scope).</returns>
    public Tensor Encode() => transform is null ? EmbeddingWeight.alias() : transform.call(EmbeddingWeight);

    /// <inheritdoc />
    public (Tensor Keys, Tensor Values) GetPrefix(int layerIndex, long batchSize, ScalarType dtype)
    {
        var width = 2L * kvHeads * headDim;
        var offset = layerIndex * width;
        var rows = down is null
            ? EmbeddingWeight.narrow(1, offset, width)
            : nn.functional.linear(down.call(EmbeddingWeight).tanh(), up!.weight!.narrow(0, offset, width), up.bias!.narrow(0, offset, width));
        var pair = rows.to(dtype).view(PrefixLength, 2, kvHeads, headDim).permute(1, 2, 0, 3);
        return (pair[0].unsqueeze(0).expand(batchSize, -1, -1, -1), pair[1].unsqueeze(0).expand(batchSize, -1, -1, -1));
    }

    /// <summary>Re-initialises the parameters from a seeded generator (PyTorch's default distributions), or zeroes as PEFT's <c>init_weights="zero"</c>.</summary>
    /// <param name="init">The init.</param>
    /// <param name="generator">The generator.</param>
    internal void Initialize(PrefixTuningInit init, Generator generator)
    {
        using var noGrad = no_grad();
        EmbeddingWeight.normal_(0, 1, generator);
        foreach (var linear in new[] { down, up }.OfType<Linear>())
        {
            var bound = 1 / Math.Sqrt(linear.weight!.shape[1]);
            linear.weight.uniform_(-bound, bound, generator);
            linear.bias!.uniform_(-bound, bound, generator);
        }

        if (init == PrefixTuningInit.Zero)
        {
            if (up is null)
            {
                EmbeddingWeight.zero_();
            }
            else
            {
                up.weight!.zero_();
                up.bias!.zero_();
            }
        }
    }
}
