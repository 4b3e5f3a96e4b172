using FineTuning.Core.Data;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// Options of OPD — <b>Optimal Parameter Decoupling</b>, a method defined by this library (not on-policy distillation,
/// which shares the abbreviation). OPD scores every selectable weight with Fisher estimates at the base weights on task
/// data and on general calibration data, protects a core set that matters most for general behaviour, selects the
/// trainable set that exactly maximises predicted task gain − β·predicted general damage under a budget, trains only
/// that set with a general-Fisher-weighted anchor toward the base, and stores the result as a sparse delta.
/// "Optimal" means the exact optimum of that stated surrogate, not of the true loss. See docs/methods.md.
/// </summary>
public sealed record OpdOptions
{
    /// <summary>The defaults: 1 % of the selectable parameters, element granularity with row quotas, κ 0.2, β 1, λ 1.</summary>
    public static OpdOptions Default { get; } = new();

    /// <summary>How many scalars may train: a count or a fraction of the selectable parameters; default 1 %.</summary>
    public OpdBudget Budget { get; init; } = OpdBudget.Of(0.01);

    /// <summary>What is selected: single weights (default), whole tensors or whole decoder layers.</summary>
    public OpdGranularity Granularity { get; init; } = OpdGranularity.Element;

    /// <summary>
    /// Element granularity only: every output row (a weight row and its bias entry) first gets ⌊B / rows⌋ of its best
    /// positive-score entries, the rest of the budget goes to the best remaining entries; default on.
    /// </summary>
    public bool RowQuotas { get; init; } = true;

    /// <summary>κ: the fraction of selectable parameters marked core (highest tensor-normalised general Fisher) and never trained; default 0.2, 0 disables.</summary>
    public double CoreFraction { get; init; } = 0.2;

    /// <summary>β: the weight of predicted general damage H in the score S = G − β·H; default 1.</summary>
    public double Beta { get; init; } = 1.0;

    /// <summary>λ: the strength of the anchor (λ/2)·Σ F̃ᴳᵢ·δᵢ² toward the base weights (F̃ᴳ = general Fisher over its mean); default 1, 0 disables.</summary>
    public double AnchorStrength { get; init; } = 1.0;

    /// <summary>The score that is maximised; default <see cref="OpdScoreKind.Decoupled"/>.</summary>
    public OpdScoreKind ScoreKind { get; init; } = OpdScoreKind.Decoupled;

    /// <summary>N_T: task examples scored (one gradient pass each, batch of one); default 64.</summary>
    public int TaskCalibrationExamples { get; init; } = 64;

    /// <summary>N_G: general examples scored (one gradient pass each, batch of one); default 64.</summary>
    public int GeneralCalibrationExamples { get; init; } = 64;

    /// <summary>
    /// General ("core capability") calibration data: examples of what the base must keep doing. Required unless the
    /// score is <see cref="OpdScoreKind.TaskFisher"/> or <see cref="OpdScoreKind.Random"/> and <see cref="CoreFraction"/> is 0
    /// (the anchor then weighs every element equally, as L2-SP).
    /// </summary>
    public IReadOnlyList<TrainingExample>? GeneralData { get; init; }

    /// <summary>Let the untied <c>lm_head</c> be selected; default off (it carries general knowledge). A tied head cannot be selected.</summary>
    public bool IncludeHead { get; init; }

    /// <summary>Seed of the calibration sample (and of <see cref="OpdScoreKind.Random"/>); default 0.</summary>
    public long Seed { get; init; }

    /// <summary>Also write the explanation report here (JSON; the Markdown next to it with <c>.md</c>) on every save; <c>null</c> = only in the saved folder.</summary>
    public string? ReportPath { get; init; }

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range or general data is missing.</exception>
    public void Validate()
    {
        Budget.Validate($"{nameof(OpdOptions)}.{nameof(Budget)}");
        if (!(CoreFraction >= 0 && CoreFraction < 1))
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(CoreFraction)}", $"must be in [0, 1), got {CoreFraction}.");
        }

        if (!(Beta >= 0) || double.IsInfinity(Beta))
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(Beta)}", $"must be a finite number ≥ 0, got {Beta}.");
        }

        if (!(AnchorStrength >= 0) || double.IsInfinity(AnchorStrength))
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(AnchorStrength)}", $"must be a finite number ≥ 0, got {AnchorStrength}.");
        }

        if (TaskCalibrationExamples < 1)
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(TaskCalibrationExamples)}", $"must be 1 or more, got {TaskCalibrationExamples}.");
        }

        if (GeneralCalibrationExamples < 1)
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(GeneralCalibrationExamples)}", $"must be 1 or more, got {GeneralCalibrationExamples}.");
        }

        if (!Enum.IsDefined(Granularity))
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(Granularity)}", $"unknown value {Granularity}.");
        }

        if (!Enum.IsDefined(ScoreKind))
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(ScoreKind)}", $"unknown value {ScoreKind}.");
        }

        if (GeneralData is null or { Count: 0 } && NeedsGeneralData)
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(GeneralData)}", $"the {ScoreKind} score{(CoreFraction > 0 ? " and the core set (CoreFraction > 0)" : "")} need general calibration data (examples of what the base must keep doing).");
        }
    }

    /// <summary>Whether the options need <see cref="GeneralData"/>.</summary>
    internal bool NeedsGeneralData => ScoreKind is OpdScoreKind.Decoupled or OpdScoreKind.Ratio || CoreFraction > 0;
}
