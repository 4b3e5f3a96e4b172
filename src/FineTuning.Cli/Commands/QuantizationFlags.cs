using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using Microsoft.Extensions.Logging;

namespace FineTuning.Cli.Commands;

/// <summary>
/// The 4-bit options of <c>quantize</c> (<c>--type</c>) and <c>--method qlora</c> (<c>--quant-type</c>):
/// <c>nf4|fp4|int4</c>, <c>--double-quant</c> / <c>--no-double-quant</c>, <c>--blocksize N</c>,
/// <c>--compute-dtype bfloat16|float16|float32</c>.
/// </summary>
internal static class QuantizationFlags
{
    public static readonly string[] FlagNames = ["double-quant", "no-double-quant"];

    /// <summary>Reads the options (QLoRA's defaults for those not given); <paramref name="given"/> tells whether any was on the command line.</summary>
    public static QuantizationOptions Read(CommandLine commandLine, string typeOption, out bool given)
    {
        var typeText = commandLine.String(typeOption);
        var blockSize = commandLine.Int("blocksize", min: 1);
        var computeText = commandLine.String("compute-dtype");
        var doubleQuant = commandLine.Flag("double-quant");
        var noDoubleQuant = commandLine.Flag("no-double-quant");
        given = typeText is not null || blockSize is not null || computeText is not null || doubleQuant || noDoubleQuant;
        if (doubleQuant && noDoubleQuant)
        {
            throw new UsageException("Options --double-quant and --no-double-quant contradict each other.");
        }

        var options = QuantizationOptions.Default;
        if (typeText is not null)
        {
            options = options with
            {
                Type = FourBitCodeTable.TryParse(typeText, out var type) ? type : throw new UsageException($"Option --{typeOption} expects nf4, fp4 or int4, got '{typeText}'."),
            };
        }

        if (blockSize is { } size)
        {
            options = options with
            {
                BlockSize = Blockwise4BitQuantizer.IsSupportedBlockSize(size) ? size
                    : throw new UsageException($"Option --blocksize expects one of {string.Join(", ", Blockwise4BitQuantizer.SupportedBlockSizes)}, got {size}."),
            };
        }

        if (computeText is not null)
        {
            try
            {
                options = options with { ComputeDType = ModelConfig.ParseDtype(computeText) };
            }
            catch (ModelConfigException)
            {
                throw new UsageException($"Option --compute-dtype expects bfloat16, float16 or float32, got '{computeText}'.");
            }
        }

        return options with { DoubleQuant = !noDoubleQuant };
    }

    /// <summary>The 4-bit layers of a model in one line: settings, count and storage bits per weight; <c>null</c> when it has none.</summary>
    public static string? Describe(CausalLanguageModel model)
    {
        var layers = model.named_modules().Select(m => m.module).OfType<Linear4Bit>().ToList();
        if (layers.Count == 0)
        {
            return null;
        }

        var bits = layers.Sum(l => l.StorageBytes) * 8.0 / layers.Sum(l => l.InFeatures * l.OutFeatures);
        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"quantization: {ModelQuantizer.Describe(model)} ({layers.Count} projections, {bits:F3} bits/param)");
    }
}

/// <summary>Writes a strategy's warnings to the error stream as <c>warning: …</c> lines.</summary>
internal sealed class WarningWriter(TextWriter error) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            error.WriteLine($"warning: {formatter(state, exception)}");
        }
    }
}
