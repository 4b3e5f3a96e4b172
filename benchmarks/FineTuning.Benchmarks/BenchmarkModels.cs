using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>The small LLaMA configuration every benchmark uses, and helpers to build it.</summary>
internal static class BenchmarkModels
{
    /// <summary>
    /// A small LLaMA: vocab 8192, hidden 256, MLP 688, 4 layers, 8 query heads and 4 key/value heads (GQA),
    /// untied embeddings; about 7.1 M parameters.
    /// </summary>
    public static ModelConfig Config { get; } = ModelPresets.Small with
    {
        VocabSize = 8192,
        MaxPositionEmbeddings = 512,
        TieWordEmbeddings = false,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    /// <summary>Builds the model on the CPU in <paramref name="dtype"/> with seeded weights (outside any dispose scope).</summary>
    public static CausalLanguageModel Create(ScalarType dtype, long seed = 1234)
    {
        var model = CausalLanguageModel.Create(Config, CPU, dtype);
        model.InitializeWeights(seed);
        return model;
    }

    /// <summary>Random token ids in [3, vocab), [batch, length] int64, not owned by any dispose scope.</summary>
    public static Tensor RandomIds(long batch, long length, long seed)
    {
        var generator = new Generator((ulong)seed, CPU);
        return randint(3, Config.VocabSize, [batch, length], dtype: ScalarType.Int64, generator: generator).DetachFromDisposeScope();
    }
}
