using FineTuning.Core.Models;
using TorchSharp;

namespace FineTuning.Core.Tests;

/// <summary>Small configurations and models built in code for fast tests.</summary>
internal static class TinyModels
{
    public static ModelConfig Config(ModelFamily family = ModelFamily.Llama, bool tied = false, int kvHeads = 2, int? slidingWindow = null) => new()
    {
        Family = family,
        VocabSize = 97,
        HiddenSize = 32,
        IntermediateSize = 64,
        NumHiddenLayers = 2,
        NumAttentionHeads = 4,
        NumKeyValueHeads = kvHeads,
        MaxPositionEmbeddings = 128,
        RmsNormEps = 1e-5,
        TieWordEmbeddings = tied,
        SlidingWindow = slidingWindow,
        BosTokenId = 1,
        EosTokenIds = [2],
    };

    public static CausalLanguageModel Create(ModelConfig? config = null, torch.ScalarType dtype = torch.ScalarType.Float32, long seed = 1234)
    {
        var model = CausalLanguageModel.Create(config ?? Config(), torch.CPU, dtype);
        model.InitializeWeights(seed, std: 0.1);
        return model;
    }
}
