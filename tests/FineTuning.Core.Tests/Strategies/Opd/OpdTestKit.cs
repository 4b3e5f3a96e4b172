using FineTuning.Core.Data;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Training;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Opd;

/// <summary>OPD on the tiny test model (vocabulary 97) with synthetic task and general data.</summary>
internal static class OpdTestKit
{
    /// <summary>Selectable scalars of <see cref="TinyModels.Config"/>: per layer q 32·32, k and v 16·32, o 32·32, gate and up 64·32, down 32·64.</summary>
    public const long TinySelectable = 2 * ((32 * 32) + (2 * 16 * 32) + (32 * 32) + (3 * 64 * 32));

    public static List<TokenizedExample> TaskExamples { get; } = TrainingData.Examples(12, seed: 21);

    public static List<TokenizedExample> General { get; } = TrainingData.Examples(12, seed: 22);

    /// <summary>Stand-ins for the general examples; <see cref="Data"/> formats them into <see cref="General"/>.</summary>
    public static IReadOnlyList<TrainingExample> GeneralPlaceholders { get; } = General.Select((_, i) => (TrainingExample)new TextExample($"general {i}")).ToList();

    public static TaskData Data => new(TaskExamples, _ => General, LossOnCompletionOnly: true);

    public static OpdOptions Options => OpdOptions.Default with
    {
        GeneralData = GeneralPlaceholders,
        Budget = OpdBudget.Of(0.05),
        TaskCalibrationExamples = 12,
        GeneralCalibrationExamples = 12,
        Seed = 3,
    };

    public static OpdStrategy Prepared(CausalLanguageModel model, OpdOptions? options = null)
    {
        var strategy = new OpdStrategy(options ?? Options);
        strategy.Apply(model, StrategyContext.Empty);
        strategy.Prepare(Data);
        return strategy;
    }

    /// <summary>Sets every δ to N(0, 0.05²) values, as if trained.</summary>
    public static void Randomize(OpdStrategy strategy, ulong seed = 5)
    {
        var generator = new TorchSharp.torch.Generator(seed);
        using var _ = no_grad();
        foreach (var p in strategy.TrainableParameters())
        {
            p.Parameter.copy_(randn(p.Parameter.shape, generator: generator).mul(0.05));
        }
    }

    public static Tensor Logits(CausalLanguageModel model)
    {
        using var _ = no_grad();
        var ids = tensor(new long[] { 3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26 }, [2, 6], dtype: ScalarType.Int64);
        return model.call(new ModelInput { InputIds = ids }).Logits.detach().clone();
    }

    public static bool BitEqual(Tensor a, Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    /// <summary>Every base parameter, named as in the plain model (a wrapper's <c>.base_layer</c> dropped, deltas skipped).</summary>
    public static Dictionary<string, Tensor> BaseParameters(CausalLanguageModel model) => model.named_parameters()
        .Where(p => !p.name.Contains(".opd_", StringComparison.Ordinal))
        .ToDictionary(p => p.name.Replace(".base_layer.", ".", StringComparison.Ordinal), p => (Tensor)p.parameter);
}
