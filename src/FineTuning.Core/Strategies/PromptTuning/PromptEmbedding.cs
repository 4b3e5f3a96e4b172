using FineTuning.Core.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.PromptTuning;

/// <summary>
/// PEFT's <c>PromptEmbedding</c>: an fp32 embedding table [T, hidden] (parameter <c>embedding.weight</c>) whose rows
/// are the virtual tokens. As the model's input-embeddings hook it returns them, cast to the token embeddings' dtype,
/// for every row of a batch.
/// </summary>
public sealed class PromptEmbedding : nn.Module, IInputEmbeddingsHook
{
#pragma warning disable IDE1006 // field name is PEFT's parameter name
    private readonly Embedding embedding;
#pragma warning restore IDE1006

    /// <summary>Creates the table (N(0, 1) values until initialised otherwise).</summary>
    /// <param name="virtualTokens">T.</param>
    /// <param name="hiddenSize">The model's hidden size.</param>
    /// <param name="device">Where the table lives.</param>
    public PromptEmbedding(int virtualTokens, int hiddenSize, Device device) : base(nameof(PromptEmbedding))
    {
        embedding = nn.Embedding(virtualTokens, hiddenSize, device: device, dtype: ScalarType.Float32);
        RegisterComponents();
    }

    /// <summary>The virtual tokens, [T, hidden] fp32.</summary>
    public Parameter Weight => embedding.weight!;

    /// <inheritdoc />
    public int VirtualTokenCount => (int)Weight.shape[0];

    /// <inheritdoc />
    public Tensor GetVirtualEmbeddings(long batchSize, ScalarType dtype) =>
        Weight.to(dtype).unsqueeze(0).expand(batchSize, -1, -1);
}
