using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// The LM head of a model with tied word embeddings: it multiplies by the embedding matrix without registering
/// it again, so the shared tensor appears once, as <c>model.embed_tokens.weight</c> (what Hugging Face saves).
/// </summary>
public sealed class TiedLinear : nn.Module<Tensor, Tensor>
{
    private readonly Func<Parameter> sharedWeight;

    /// <summary>Creates a head that reads the embedding's current weight at every call.</summary>
    /// <param name="embedding">The input embedding whose matrix is shared.</param>
    public TiedLinear(Embedding embedding) : base(nameof(TiedLinear))
    {
        sharedWeight = () => embedding.weight!;
        RegisterComponents();
    }

    /// <summary>The shared matrix, [vocab, hidden].</summary>
    public Parameter Weight => sharedWeight();

    /// <inheritdoc />
    public override Tensor forward(Tensor input) => nn.functional.linear(input, sharedWeight());
}
