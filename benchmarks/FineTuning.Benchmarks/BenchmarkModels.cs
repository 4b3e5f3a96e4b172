using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>The models the training-step benchmarks compare methods on.</summary>
public enum BenchmarkModel
{
    /// <summary><see cref="BenchmarkModels.Config"/>: about 7.1 M parameters, 59 % of them in the embedding and head; batch 4 × 128 tokens.</summary>
    Small,

    /// <summary><see cref="BenchmarkModels.LayerHeavyConfig"/>: about 61.9 M parameters, 73 % of them in the decoder layers; batch 4 × 64 tokens.</summary>
    LayerHeavy,

    /// <summary>
    /// A 1.98 B-parameter model whose weights dominate memory (3.96 GB in bf16): hidden 2048, intermediate 8192,
    /// 32 layers, 16 heads over 4 key/value heads, the 8192-token vocabulary (untied). 98 % of the parameters are
    /// decoder projections, the part QLoRA quantizes; batch 2 × 256 tokens.
    /// </summary>
    WeightHeavy,
}

/// <summary>The LLaMA configurations the benchmarks use, and helpers to build them.</summary>
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

    /// <summary>
    /// A model whose decoder layers dominate the compute, closer to a real LLM's proportions: <see cref="Config"/>
    /// with hidden 1024, MLP 2816, 16 query heads and 4 key/value heads (head size 64, GQA 4:1 as in Llama 3),
    /// 4 layers; about 61.9 M parameters, 45.1 M of them in the layers.
    /// </summary>
    public static ModelConfig LayerHeavyConfig { get; } = Config with
    {
        HiddenSize = 1024,
        IntermediateSize = 2816,
        NumAttentionHeads = 16,
        NumKeyValueHeads = 4,
    };

    /// <summary>The configuration of a benchmark model.</summary>
    /// <summary>The <see cref="BenchmarkModel.WeightHeavy"/> configuration.</summary>
    public static ModelConfig WeightHeavyConfig { get; } = Config with
    {
        HiddenSize = 2048,
        IntermediateSize = 8192,
        NumHiddenLayers = 32,
        NumAttentionHeads = 16,
        NumKeyValueHeads = 4,
    };

    public static ModelConfig ConfigOf(BenchmarkModel model) => model switch
    {
        BenchmarkModel.Small => Config,
        BenchmarkModel.LayerHeavy => LayerHeavyConfig,
        BenchmarkModel.WeightHeavy => WeightHeavyConfig,
        _ => throw new ArgumentOutOfRangeException(nameof(model), model, null),
    };

    /// <summary>The training batch of a benchmark model: rows × target tokens per row.</summary>
    public static (long Batch, long Length) TrainingBatchOf(BenchmarkModel model) => model switch
    {
        BenchmarkModel.Small => (4, 128),
        BenchmarkModel.LayerHeavy => (4, 64),
        BenchmarkModel.WeightHeavy => (2, 256),
        _ => throw new ArgumentOutOfRangeException(nameof(model), model, null),
    };

    /// <summary>Builds a benchmark model on the CPU in <paramref name="dtype"/> with seeded weights (outside any dispose scope).</summary>
    public static CausalLanguageModel Create(BenchmarkModel model, ScalarType dtype, long seed = 1234)
    {
        var result = CausalLanguageModel.Create(ConfigOf(model), CPU, dtype);
        result.InitializeWeights(seed);
        return result;
    }

    /// <summary>Builds the model on the CPU in <paramref name="dtype"/> with seeded weights (outside any dispose scope).</summary>
    public static CausalLanguageModel Create(ScalarType dtype, long seed = 1234) => Create(BenchmarkModel.Small, dtype, seed);

    /// <summary>
    /// Random next-token data: <c>[batch, length]</c> input ids and the targets one position later (both int64, not
    /// owned by any dispose scope).
    /// </summary>
    public static (Tensor Inputs, Tensor Targets) NextTokenBatch(long batch, long length, long seed)
    {
        using var scope = NewDisposeScope();
        using var tokens = RandomIds(batch, length + 1, seed);
        return (tokens.narrow(1, 0, length).contiguous().DetachFromDisposeScope(), tokens.narrow(1, 1, length).contiguous().DetachFromDisposeScope());
    }

    /// <summary>Random token ids in [3, vocab), [batch, length] int64, not owned by any dispose scope.</summary>
    public static Tensor RandomIds(long batch, long length, long seed)
    {
        var generator = new Generator((ulong)seed, CPU);
        return randint(3, Config.VocabSize, [batch, length], dtype: ScalarType.Int64, generator: generator).DetachFromDisposeScope();
    }
}
