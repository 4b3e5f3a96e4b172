using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;

namespace FineTuning.Core.Strategies.QLora;

/// <summary>
/// Options of QLoRA (Dettmers et al., 2023): the base's projections are quantized to 4 bits
/// (<see cref="Quantization"/>) and frozen, and LoRA adapters (<see cref="Lora"/>, fp32) train on top.
/// </summary>
/// <remarks>
/// The defaults are the library's: r 16, alpha 32, no dropout, every projection (<c>all-linear</c>) — the paper's main
/// finding is that LoRA on all linear layers is what matches full fine-tuning, while r matters little (§4) — with NF4,
/// double quantization, blocks of 64 and bf16 compute. <see cref="PaperPreset"/> has the paper's adapter settings.
/// </remarks>
public sealed record QLoraOptions
{
    /// <summary>The defaults: r 16, alpha 32, all-linear; NF4, double quantization, blocks of 64, bf16 compute.</summary>
    public static QLoraOptions Default { get; } = new();

    /// <summary>
    /// The adapter settings of the QLoRA paper and its Guanaco scripts: r 64, alpha 16, dropout 0.05, every linear layer,
    /// NF4 with double quantization and bf16 compute.
    /// </summary>
    /// <remarks>
    /// Sources (see <c>docs/methods.md</c>): r 64, alpha 16 and "all linear layers" from the paper's Appendix B.2 and
    /// <c>scripts/finetune_guanaco_*.sh</c> (<c>--lora_r 64 --lora_alpha 16 --lora_modules all</c>); NF4, double quant
    /// and bf16 compute from the same scripts (<c>--quant_type nf4 --double_quant --bf16</c>). Dropout is 0.05 in the
    /// 13B/33B/65B scripts; the 7B script uses 0.1 (<c>PaperPreset with { Lora = PaperPreset.Lora with { Dropout = 0.1 } }</c>).
    /// The training hyperparameters are in <see cref="QLoraPreset.PaperTraining"/>.
    /// </remarks>
    public static QLoraOptions PaperPreset { get; } = new()
    {
        Lora = new LoraOptions { R = 64, Alpha = 16, Dropout = 0.05, TargetModules = LoraTargetModules.AllLinear },
    };

    /// <summary>The adapters; by default r 16, alpha 32, no dropout, every projection except <c>lm_head</c>, fp32 weights.</summary>
    public LoraOptions Lora { get; init; } = new() { R = 16, Alpha = 32, TargetModules = LoraTargetModules.AllLinear };

    /// <summary>How the base is quantized; by default NF4, double quantization, blocks of 64, bf16 compute.</summary>
    public QuantizationOptions Quantization { get; init; } = QuantizationOptions.Default;

    /// <summary>
    /// Keep the full-precision Linear layers that quantization replaces, so <see cref="QLoraStrategy.Remove"/> puts them
    /// back bit for bit. Off by default: holding them costs the memory QLoRA exists to save.
    /// </summary>
    public bool KeepFullPrecisionBase { get; init; }

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range; the option is named as <c>QLoraOptions.Lora.R</c>, <c>QLoraOptions.Quantization.BlockSize</c>….</exception>
    public void Validate()
    {
        if (Lora is null || Quantization is null)
        {
            throw new InvalidOptionException($"{nameof(QLoraOptions)}.{(Lora is null ? nameof(Lora) : nameof(Quantization))}", "must not be null.");
        }

        Qualify(Lora.Validate);
        Qualify(Quantization.Validate);
        if (Lora.Init == LoraInit.Pissa)
        {
            throw new InvalidOptionException($"{nameof(QLoraOptions)}.{nameof(Lora)}.{nameof(LoraOptions.Init)}", "PiSSA needs the full-precision base weight, which QLoRA quantizes; initialise PiSSA on the full model and quantize the residual instead.");
        }
    }

    /// <summary>
    /// Runs a check whose <see cref="InvalidOptionException"/> names a <see cref="LoraOptions"/> or
    /// <see cref="QuantizationOptions"/> option, renaming it to its path under <see cref="QLoraOptions"/>.
    /// </summary>
    internal static void Qualify(Action check)
    {
        try
        {
            check();
        }
        catch (InvalidOptionException e)
        {
            throw Qualified(e);
        }
    }

    /// <summary>The same error with the option named from <see cref="QLoraOptions"/> (<c>LoraOptions.R</c> → <c>QLoraOptions.Lora.R</c>).</summary>
    internal static InvalidOptionException Qualified(InvalidOptionException e)
    {
        foreach (var (prefix, path) in new[] { (nameof(LoraOptions), nameof(Lora)), (nameof(QuantizationOptions), nameof(Quantization)) })
        {
            if (e.Option.StartsWith(prefix + ".", StringComparison.Ordinal))
            {
                var option = $"{nameof(QLoraOptions)}.{path}{e.Option[prefix.Length..]}";
                return new InvalidOptionException(option, e.Message[(e.Option.Length + 2)..]);
            }
        }

        return e;
    }
}
