using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Tokenization;
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

    /// <summary>The random tiny preset (GPT-2 vocabulary, std 0.02 as <c>finetune init</c> does), in memory.</summary>
    public static CausalLanguageModel Preset(long seed = 1)
    {
        var model = CausalLanguageModel.Create(ModelPresets.Tiny, torch.CPU, torch.ScalarType.Float32);
        model.InitializeWeights(seed);
        return model;
    }

    /// <summary>Writes the random tiny preset with the GPT-2 tokenizer files as a Hugging Face folder; returns the folder.</summary>
    public static string WritePreset(string directory, long seed = 1)
    {
        using var model = Preset(seed);
        HuggingFaceModel.Save(model, directory);
        TokenizerFiles.WriteGpt2(directory);
        return directory;
    }
}
