using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Strategies.Lora;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>--method</c> and each method's options, shared by <c>inspect</c> and <c>train</c>:
/// <c>sft</c> (<c>--freeze-embeddings</c>, <c>--freeze-layers N</c>) and <c>lora</c>
/// (<c>--r --alpha --dropout --targets a,b|all-linear|regex:PATTERN --rslora --dora</c>).
/// </summary>
internal static class MethodOptions
{
    public static readonly string[] FlagNames = ["freeze-embeddings", "rslora", "dora"];

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
        if (method is null)
        {
            return required ? throw new UsageException("Missing --method sft|lora.") : null;
        }

        switch (method)
        {
            case "sft":
                var sft = new FullSftOptions { FreezeEmbeddings = freezeEmbeddings, FreezeFirstLayers = freezeLayers ?? 0 };
                return () => new FullSftStrategy(sft);
            case "lora":
                var rank = r ?? LoraOptions.Default.R;
                var lora = new LoraOptions
                {
                    R = rank,
                    Alpha = alpha ?? 2 * rank,
                    Dropout = dropout ?? 0,
                    TargetModules = ParseTargets(targets),
                    UseRsLora = rsLora,
                    UseDora = dora,
                };
                lora.Validate();
                return () => new LoraStrategy(lora);
            default:
                throw new UsageException($"Option --method expects sft or lora, got '{method}'.");
        }
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
