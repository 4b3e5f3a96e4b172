namespace FineTuning.Core.Models;

/// <summary>
/// Small LLaMA-architecture configurations for tests, demos and benchmarks, sized for the GPT-2 vocabulary
/// (50,257 tokens) that ships with the library.
/// </summary>
public static class ModelPresets
{
    /// <summary>GPT-2's vocabulary size; <c>&lt;|endoftext|&gt;</c> (50256) is BOS, EOS and padding.</summary>
    public const int Gpt2VocabSize = 50257;

    /// <summary>The names accepted by <see cref="Get"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["tiny", "small"];

    /// <summary>About 3.3 M parameters: 2 layers, hidden 64, tied embeddings. Seconds to train on a CPU.</summary>
    public static ModelConfig Tiny { get; } = new()
    {
        Family = ModelFamily.Llama,
        VocabSize = Gpt2VocabSize,
        HiddenSize = 64,
        IntermediateSize = 176,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        MaxPositionEmbeddings = 512,
        RmsNormEps = 1e-5,
        TieWordEmbeddings = true,
        BosTokenId = 50256,
        EosTokenIds = [50256],
        TorchDtype = "float32",
    };

    /// <summary>About 16 M parameters: 4 layers, hidden 256, grouped-query attention, tied embeddings.</summary>
    public static ModelConfig Small { get; } = Tiny with
    {
        HiddenSize = 256,
        IntermediateSize = 688,
        NumHiddenLayers = 4,
        NumAttentionHeads = 8,
        NumKeyValueHeads = 4,
        MaxPositionEmbeddings = 1024,
    };

    /// <summary>Returns a preset by name.</summary>
    /// <param name="name"><c>tiny</c> or <c>small</c>.</param>
    /// <returns>The configuration.</returns>
    /// <exception cref="ArgumentException">Unknown preset; the message lists the known ones.</exception>
    public static ModelConfig Get(string name) => name.ToLowerInvariant() switch
    {
        "tiny" => Tiny,
        "small" => Small,
        _ => throw new ArgumentException($"Unknown preset '{name}'; expected one of: {string.Join(", ", Names)}.", nameof(name)),
    };
}
