namespace FineTuning.Core.Strategies.Opd;

/// <summary>The per-parameter score OPD (Optimal Parameter Decoupling) maximises when it selects what trains.</summary>
public enum OpdScoreKind
{
    /// <summary>
    /// The default: S = G − β·H, predicted task gain of a diagonal natural-gradient step minus β times the general
    /// damage it predicts, with G = ½ḡ²/(Fᵀ+ε_T) and H = ½Fᴳḡ²/(Fᵀ+ε_T)².
    /// </summary>
    Decoupled,

    /// <summary>The task-to-general importance ratio R = Fᵀ/(Fᴳ+ε_G).</summary>
    Ratio,

    /// <summary>Task Fisher Fᵀ alone (FISH Mask); not invariant to rescaling, kept as a baseline.</summary>
    TaskFisher,

    /// <summary>Seeded uniform random scores: the equal-budget random baseline of a comparison (not a method to use).</summary>
    Random,
}
