using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>
/// Options of bottleneck adapters with AdapterHub's semantics (<c>BnConfig</c>): each adapter is
/// <c>residual + dropout(up(act(down(x)))·scaling)</c> with <c>down</c> a Linear(hidden → d), <c>up</c> a
/// Linear(d → hidden) and <c>d = ⌊hidden / ReductionFactor⌋</c> (at least 1), so it has
/// <c>hidden·d + d + d·hidden + hidden</c> parameters.
/// </summary>
public sealed record AdapterLayersOptions
{
    /// <summary>The adapter name <see cref="AdapterLayersStrategy.Apply"/> uses unless told otherwise.</summary>
    public const string DefaultAdapterName = "default";

    /// <summary>The Pfeiffer placement, reduction factor 16, relu, identity init.</summary>
    public static AdapterLayersOptions Default { get; } = new();

    /// <summary>Where the adapters sit; default <see cref="AdapterPlacement.Pfeiffer"/> (after the MLP only), as AdapterHub's <c>seq_bn</c>.</summary>
    public AdapterPlacement Placement { get; init; } = AdapterPlacement.Pfeiffer;

    /// <summary>hidden / bottleneck size (<c>reduction_factor</c>); default 16. Values below 1 make the "bottleneck" wider than the hidden size.</summary>
    public double ReductionFactor { get; init; } = 16;

    /// <summary>
    /// The activation (<c>non_linearity</c>); <c>null</c> = AdapterHub's default for the placement: relu for
    /// Pfeiffer, swish for Houlsby.
    /// </summary>
    public AdapterNonLinearity? NonLinearity { get; init; }

    /// <summary>How the weights start; default <see cref="AdapterInit.Identity"/> (AdapterHub's default is <c>bert</c>).</summary>
    public AdapterInit Init { get; init; } = AdapterInit.Identity;

    /// <summary>Factor on the up-projection's output (<c>scaling</c>); default 1.</summary>
    public double Scaling { get; init; } = 1.0;

    /// <summary>Dropout on the scaled up-projection output, before the residual add (<c>dropout</c>); default 0.</summary>
    public double Dropout { get; init; }

    /// <summary>Decoder layers that get no adapter (<c>leave_out</c>); default none.</summary>
    public IReadOnlyList<int> LeaveOut { get; init; } = [];

    /// <summary>
    /// AdapterHub's <c>original_ln_before</c>: the adapter's input is the sublayer output plus the residual stream
    /// (the pre-trained residual add done before the adapter; Llama has no post-sublayer norm to apply). <c>null</c> =
    /// the placement's AdapterHub value: true for Pfeiffer (<c>seq_bn</c>), false for Houlsby (<c>double_seq_bn</c>).
    /// </summary>
    public bool? OriginalLnBefore { get; init; }

    /// <summary>
    /// AdapterHub's <c>residual_before_ln</c>: the adapter's own residual is the sublayer output (true, the default)
    /// rather than its input (false; differs only with <see cref="OriginalLnBefore"/>).
    /// </summary>
    public bool ResidualBeforeLn { get; init; } = true;

    /// <summary>The dtype of the adapter weights; default fp32 even on a bf16 base. Inputs are cast to it and the result back to the base's dtype.</summary>
    public ScalarType AdapterDType { get; init; } = ScalarType.Float32;

    /// <summary>Seed of the random generator that initialises the adapters.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>The base model's name or path, written to <c>adapter_config.json</c> (<c>model_name</c>).</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The activation actually used: <see cref="NonLinearity"/>, else the placement's default.</summary>
    public AdapterNonLinearity EffectiveNonLinearity => NonLinearity ?? (Placement == AdapterPlacement.Houlsby ? AdapterNonLinearity.Swish : AdapterNonLinearity.Relu);

    /// <summary>The <c>original_ln_before</c> actually used: <see cref="OriginalLnBefore"/>, else the placement's default.</summary>
    public bool EffectiveOriginalLnBefore => OriginalLnBefore ?? Placement == AdapterPlacement.Pfeiffer;

    /// <summary>The bottleneck size for a hidden size: <c>int(hidden // ReductionFactor)</c>, at least 1 (AdapterHub's rule).</summary>
    /// <param name="hiddenSize">The model's hidden size.</param>
    /// <returns>d.</returns>
    public int BottleneckSize(int hiddenSize) => Math.Max(1, (int)Math.Floor(hiddenSize / ReductionFactor));

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Placement))
        {
            throw Invalid(nameof(Placement), $"must be Pfeiffer or Houlsby, got {Placement}.");
        }

        if (!double.IsFinite(ReductionFactor) || ReductionFactor <= 0)
        {
            throw Invalid(nameof(ReductionFactor), $"must be a positive number, got {ReductionFactor}.");
        }

        if (NonLinearity is { } act && !Enum.IsDefined(act))
        {
            throw Invalid(nameof(NonLinearity), $"must be Relu, Swish, Gelu or Tanh, got {act}.");
        }

        if (!Enum.IsDefined(Init))
        {
            throw Invalid(nameof(Init), $"must be Identity, Bert or Houlsby, got {Init}.");
        }

        if (!double.IsFinite(Scaling))
        {
            throw Invalid(nameof(Scaling), $"must be a finite number, got {Scaling}.");
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw Invalid(nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
        }

        if (LeaveOut is null || LeaveOut.Any(i => i < 0))
        {
            throw Invalid(nameof(LeaveOut), $"layer indices must be 0 or more, got [{string.Join(", ", LeaveOut ?? [])}].");
        }

        if (AdapterDType is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw Invalid(nameof(AdapterDType), $"must be Float32, BFloat16 or Float16, got {AdapterDType}.");
        }
    }

    /// <summary>An <see cref="InvalidOptionException"/> naming one of these options.</summary>
    internal static InvalidOptionException Invalid(string property, string message) => new($"{nameof(AdapterLayersOptions)}.{property}", message);
}
