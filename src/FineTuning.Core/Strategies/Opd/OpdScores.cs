using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>The statistics and scores of every selectable tensor (fp32, on the model's device), index-aligned with the targets.</summary>
internal sealed class OpdScores(IReadOnlyList<OpdTarget> targets, Tensor[] mean, Tensor[] taskFisher, Tensor[]? generalFisher) : IDisposable
{
    public IReadOnlyList<OpdTarget> Targets { get; } = targets;

    /// <summary>ḡ, the mean task gradient.</summary>
    public Tensor[] Mean { get; } = mean;

    /// <summary>Fᵀ, the empirical task Fisher diagonal.</summary>
    public Tensor[] TaskFisher { get; } = taskFisher;

    /// <summary>Fᴳ, the empirical general Fisher diagonal, or <c>null</c> without general data.</summary>
    public Tensor[]? GeneralFisher { get; } = generalFisher;

    /// <summary>G, the predicted task gain.</summary>
    public Tensor[] Gain { get; } = new Tensor[targets.Count];

    /// <summary>H, the predicted general damage.</summary>
    public Tensor[] Damage { get; } = new Tensor[targets.Count];

    /// <summary>S, the score that is maximised.</summary>
    public Tensor[] Score { get; } = new Tensor[targets.Count];

    /// <summary>The core set (never trained).</summary>
    public Tensor[] Core { get; set; } = [];

    public float[] EpsilonTask { get; } = new float[targets.Count];

    public float[] EpsilonGeneral { get; } = new float[targets.Count];

    /// <summary>The score with core and non-positive entries set to −∞ (not selectable).</summary>
    public Tensor Eligible(int i) => Score[i].masked_fill(Core[i].logical_or(Score[i].le(0)), float.NegativeInfinity);

    public void Dispose()
    {
        foreach (var t in Mean.Concat(TaskFisher).Concat(GeneralFisher ?? []).Concat(Gain).Concat(Damage).Concat(Score).Concat(Core))
        {
            t?.Dispose();
        }
    }
}
