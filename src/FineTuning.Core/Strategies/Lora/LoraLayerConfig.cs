using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>The settings of one adapter in one <see cref="LoraLinear"/> (rank and alpha after <c>rank_pattern</c>/<c>alpha_pattern</c>).</summary>
/// <param name="R">The rank.</param>
/// <param name="Alpha">The scaling numerator.</param>
public sealed record LoraLayerConfig(int R, double Alpha)
{
    /// <summary>Dropout on the LoRA branch's input.</summary>
    public double Dropout { get; init; }

    /// <summary>Whether scaling is <c>alpha / √r</c> (rsLoRA) instead of <c>alpha / r</c>.</summary>
    public bool UseRsLora { get; init; }

    /// <summary>Whether the adapter is DoRA (with a magnitude vector).</summary>
    public bool UseDora { get; init; }

    /// <summary>How A and B start.</summary>
    public LoraInit Init { get; init; } = LoraInit.Default;

    /// <summary>Subspace iterations of the randomized SVD for PiSSA; <c>null</c> = full SVD.</summary>
    public int? PissaNiter { get; init; }

    /// <summary>The dtype of A, B and the magnitude.</summary>
    public ScalarType DType { get; init; } = ScalarType.Float32;

    /// <summary>The factor applied to <c>B·A</c>: <c>alpha / r</c>, or <c>alpha / √r</c> with rsLoRA.</summary>
    public double Scaling => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <summary>The per-module settings an adapter's options give a module.</summary>
    /// <param name="options">The adapter's options.</param>
    /// <param name="fullName">The module's full name (for the rank and alpha patterns).</param>
    /// <returns>The settings.</returns>
    public static LoraLayerConfig From(LoraOptions options, string fullName)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new LoraLayerConfig(options.RankFor(fullName), options.AlphaFor(fullName))
        {
            Dropout = options.Dropout,
            UseRsLora = options.UseRsLora,
            UseDora = options.UseDora,
            Init = options.Init,
            PissaNiter = options.PissaNiter,
            DType = options.AdapterDType,
        };
    }
}
