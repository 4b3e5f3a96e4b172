using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.AdapterLayers;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Strategies.PromptTuning;
using FineTuning.Core.Strategies.QLora;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>--method</c> and each method's options, shared by <c>inspect</c> and <c>train</c>:
/// <c>sft</c> (<c>--freeze-embeddings</c>, <c>--freeze-layers N</c>), <c>lora</c>
/// (<c>--r --alpha --dropout --targets a,b|all-linear|regex:PATTERN --rslora --dora</c>), <c>qlora</c> (the LoRA
/// options, defaulting to r 16 on all-linear, plus <c>--quant-type nf4|fp4|int4 --blocksize N --no-double-quant
/// --compute-dtype D</c>), <c>prompt</c> (<c>--virtual-tokens N --init random|text|sample-vocab --init-text "…"</c>),
/// <c>prefix</c> (<c>--virtual-tokens N --init random|zero --prefix-projection --encoder-hidden-size N</c>),
/// <c>adapters</c>: bottleneck adapters (<c>--reduction-factor N --placement pfeiffer|houlsby
/// --non-linearity relu|swish|gelu|tanh --dropout P</c>) and <c>opd</c>, Optimal Parameter Decoupling (not on-policy
/// distillation): <c>--general-data general.jsonl --budget 0.01|N --granularity element|tensor|layer --core-fraction K
/// --beta B --anchor L --calibration N --report report.json</c>.
/// </summary>
internal static class MethodOptions
{
    public static readonly string[] FlagNames = ["freeze-embeddings", "rslora", "dora", "prefix-projection", .. QuantizationFlags.FlagNames];

    /// <summary>Reads the method options; returns <c>null</c> when <c>--method</c> is absent and not required.</summary>
    public static Func<IParameterStrategy>? Read(CommandLine commandLine, bool required)
    {
        var method = commandLine.String("method");
        var freezeEmbeddings = commandLine.Flag("freeze-embeddings");
        var freezeLayers = commandLine.Int("freeze-layers", min: 0);
        var r = commandLine.Int("r", min: 1);
        var alpha = commandLine.Double("alpha");
        var dropout = commandLine.Double("dropout");
        var targets = commandLine.String("targets");
        var rsLora = commandLine.Flag("rslora");
        var dora = commandLine.Flag("dora");
        var quantization = QuantizationFlags.Read(commandLine, "quant-type", out var quantizationGiven);
        var reductionFactor = commandLine.Double("reduction-factor");
        var placement = commandLine.String("placement");
        var nonLinearity = commandLine.String("non-linearity");
        var opd = ReadOpd(commandLine, method);
        var virtualTokens = commandLine.Int("virtual-tokens", min: 1);
        var init = commandLine.String("init");
        var initText = commandLine.String("init-text");
        var prefixProjection = commandLine.Flag("prefix-projection");
        var encoderHiddenSize = commandLine.Int("encoder-hidden-size", min: 1);
        if (method is null)
        {
            return required ? throw new UsageException("Missing --method sft|lora|qlora|prompt|prefix|adapters|opd.") : null;
        }

        if (quantizationGiven && method != "qlora")
        {
            throw new UsageException("Options --quant-type, --blocksize, --compute-dtype and --(no-)double-quant only apply to --method qlora.");
        }

        if ((virtualTokens is not null || init is not null) && method is not ("prompt" or "prefix"))
        {
            throw new UsageException("Options --virtual-tokens and --init only apply to --method prompt and prefix.");
        }

        if ((prefixProjection || encoderHiddenSize is not null) && method != "prefix")
        {
            throw new UsageException("Options --prefix-projection and --encoder-hidden-size only apply to --method prefix.");
        }

        if (encoderHiddenSize is not null && !prefixProjection)
        {
            throw new UsageException("Option --encoder-hidden-size needs --prefix-projection (it is the projection's hidden width).");
        }

        LoraOptions Lora(LoraOptions defaults)
        {
            var rank = r ?? defaults.R;
            var options = defaults with
            {
                R = rank,
                Alpha = alpha ?? 2 * rank,
                Dropout = dropout ?? 0,
                TargetModules = ParseTargets(targets) ?? defaults.TargetModules,
                UseRsLora = rsLora,
                UseDora = dora,
            };
            options.Validate();
            return options;
        }

        switch (method)
        {
            case "sft":
                var sft = new FullSftOptions { FreezeEmbeddings = freezeEmbeddings, FreezeFirstLayers = freezeLayers ?? 0 };
                return () => new FullSftStrategy(sft);
            case "lora":
                var lora = Lora(LoraOptions.Default);
                return () => new LoraStrategy(lora);
            case "qlora":
                var qlora = new QLoraOptions { Lora = Lora(QLoraOptions.Default.Lora), Quantization = quantization };
                qlora.Validate();
                return () => new QLoraStrategy(qlora);
            case "adapters":
                var adapters = ReadAdapters(reductionFactor, placement, nonLinearity, dropout);
                return () => new AdapterLayersStrategy(adapters);
            case "opd":
                return () => new OpdStrategy(opd!);
            case "prompt":
                var prompt = new PromptTuningOptions
                {
                    NumVirtualTokens = virtualTokens ?? PromptTuningOptions.Default.NumVirtualTokens,
                    Init = init switch
                    {
                        null => initText is null ? PromptTuningInit.Random : PromptTuningInit.Text,
                        "random" => PromptTuningInit.Random,
                        "text" => PromptTuningInit.Text,
                        "sample-vocab" => PromptTuningInit.SampleVocab,
                        _ => throw new UsageException($"Option --init expects random, text or sample-vocab with --method prompt, got '{init}'."),
                    },
                    InitText = initText,
                };
                if (prompt.Init == PromptTuningInit.Text)
                {
                    // PEFT rebuilds a TEXT init from tokenizer_name_or_path: the model folder holds the tokenizer.
                    prompt = prompt with { TokenizerNameOrPath = commandLine.Positional(0, "model-dir") };
                }

                prompt.Validate();
                return () => new PromptTuningStrategy(prompt);
            case "prefix":
                if (initText is not null)
                {
                    throw new UsageException("Option --init-text only applies to --method prompt.");
                }

                var prefix = new PrefixTuningOptions
                {
                    NumVirtualTokens = virtualTokens ?? PrefixTuningOptions.Default.NumVirtualTokens,
                    PrefixProjection = prefixProjection,
                    EncoderHiddenSize = encoderHiddenSize,
                    Init = init switch
                    {
                        null or "random" => PrefixTuningInit.Random,
                        "zero" => PrefixTuningInit.Zero,
                        _ => throw new UsageException($"Option --init expects random or zero with --method prefix, got '{init}'."),
                    },
                };
                prefix.Validate();
                return () => new PrefixTuningStrategy(prefix);
            default:
                throw new UsageException($"Option --method expects sft, lora, qlora, prompt, prefix, adapters or opd, got '{method}'.");
        }
    }

    /// <summary>The OPD (Optimal Parameter Decoupling) options; <c>null</c> for another method (which must not get them).</summary>
    private static OpdOptions? ReadOpd(CommandLine commandLine, string? method)
    {
        var budget = commandLine.String("budget");
        var granularity = commandLine.String("granularity");
        var generalData = commandLine.String("general-data");
        var report = commandLine.String("report");
        var coreFraction = commandLine.Double("core-fraction");
        var beta = commandLine.Double("beta");
        var anchor = commandLine.Double("anchor");
        var calibration = commandLine.Int("calibration", min: 1);
        if (method != "opd")
        {
            var given = budget is not null || granularity is not null || generalData is not null || report is not null || coreFraction is not null || beta is not null || anchor is not null || calibration is not null;
            return !given
                ? null
                : throw new UsageException("Options --budget, --granularity, --general-data, --report, --core-fraction, --beta, --anchor and --calibration only apply to --method opd.");
        }

        var d = OpdOptions.Default;
        var options = d with
        {
            Budget = budget is null ? d.Budget : Parse(() => OpdBudget.Parse(budget), "--budget"),
            Granularity = granularity switch
            {
                null => d.Granularity,
                "element" => OpdGranularity.Element,
                "tensor" => OpdGranularity.Tensor,
                "layer" => OpdGranularity.Layer,
                _ => throw new UsageException($"Option --granularity expects element, tensor or layer, got '{granularity}'."),
            },
            GeneralData = generalData is null ? null : Parse(() => FineTuning.Core.Data.JsonlDataset.Load(generalData), "--general-data"),
            ReportPath = report,
            CoreFraction = coreFraction ?? d.CoreFraction,
            Beta = beta ?? d.Beta,
            AnchorStrength = anchor ?? d.AnchorStrength,
            TaskCalibrationExamples = calibration ?? d.TaskCalibrationExamples,
            GeneralCalibrationExamples = calibration ?? d.GeneralCalibrationExamples,
        };
        if (options.GeneralData is null)
        {
            throw new UsageException("--method opd needs --general-data general.jsonl: examples of what the base must keep doing (it scores the general Fisher and the core set on them).");
        }

        options.Validate();
        return options;
    }

    private static T Parse<T>(Func<T> parse, string option)
    {
        try
        {
            return parse();
        }
        catch (Exception e) when (e is FormatException or IOException)
        {
            throw new UsageException($"Option {option}: {e.Message}");
        }
    }

    /// <summary>The <c>adapters</c> method's options; <c>--non-linearity</c> defaults to the placement's (relu for Pfeiffer, swish for Houlsby).</summary>
    private static AdapterLayersOptions ReadAdapters(double? reductionFactor, string? placement, string? nonLinearity, double? dropout)
    {
        var options = new AdapterLayersOptions
        {
            ReductionFactor = reductionFactor ?? AdapterLayersOptions.Default.ReductionFactor,
            Placement = placement?.ToLowerInvariant() switch
            {
                null or "pfeiffer" => AdapterPlacement.Pfeiffer,
                "houlsby" => AdapterPlacement.Houlsby,
                _ => throw new UsageException($"Option --placement expects pfeiffer or houlsby, got '{placement}'."),
            },
            NonLinearity = nonLinearity?.ToLowerInvariant() switch
            {
                null => null,
                "relu" => AdapterNonLinearity.Relu,
                "swish" or "silu" => AdapterNonLinearity.Swish,
                "gelu" => AdapterNonLinearity.Gelu,
                "tanh" => AdapterNonLinearity.Tanh,
                _ => throw new UsageException($"Option --non-linearity expects relu, swish, gelu or tanh, got '{nonLinearity}'."),
            },
            Dropout = dropout ?? 0,
        };
        options.Validate();
        return options;
    }

    /// <summary><c>a,b,c</c> = names (exact or suffix); <c>all-linear</c>; <c>regex:PATTERN</c> = a full-match regex.</summary>
    private static LoraTargetModules? ParseTargets(string? text)
    {
        if (text is null)
        {
            return null;
        }

        const string regexPrefix = "regex:";
        if (text.StartsWith(regexPrefix, StringComparison.Ordinal))
        {
            return LoraTargetModules.FromPattern(text[regexPrefix.Length..]);
        }

        if (string.Equals(text, LoraTargetModules.AllLinearShorthand, StringComparison.OrdinalIgnoreCase))
        {
            return LoraTargetModules.AllLinear;
        }

        var names = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return names.Length > 0 ? LoraTargetModules.FromNames(names) : throw new UsageException("Option --targets needs module names, all-linear or regex:PATTERN.");
    }
}
