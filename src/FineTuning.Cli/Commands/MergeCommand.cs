using FineTuning.Core.IO;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Tokenization;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune merge &lt;model-dir&gt; --adapter &lt;dir&gt; --out &lt;dir&gt; [--requantize]</c>: folds the adapter into the
/// base weights and writes a plain Hugging Face model folder (config, safetensors, the base's tokenizer files). On a
/// 4-bit base (a QLoRA adapter on a "-bnb-4bit" folder) the weights are dequantized and the folder is 16-bit;
/// <c>--requantize</c> writes a 4-bit folder instead (the merged weights quantized again, with a warning: rounding
/// changes the outputs slightly).
/// </summary>
internal sealed class MergeCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string> { "requantize" };

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var adapter = commandLine.String("adapter") ?? throw new UsageException("merge needs --adapter <dir>.");
        var outputDirectory = commandLine.String("out") ?? throw new UsageException("merge needs --out <dir>.");
        var requantize = commandLine.Flag("requantize");
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        commandLine.RejectUnknown(1);
        if (Path.GetFullPath(outputDirectory) == Path.GetFullPath(directory))
        {
            throw new UsageException("--out must differ from the base model folder.");
        }

        var warnings = new WarningWriter(error);
        using var model = HuggingFaceModel.Load(directory, new ModelLoadOptions { Device = device, DType = dtype });
        var strategy = AdapterLoader.Load(adapter, model, logger: warnings);
        if (!strategy.SupportsMerge)
        {
            throw new UsageException($"A {strategy.Method} adapter cannot be merged into the base weights.");
        }

        if (strategy is QLoraStrategy qlora && requantize)
        {
            qlora.MergeAndRequantize();
        }
        else
        {
            strategy.MergeAndUnload();
            if (requantize)
            {
                // A 16-bit base: the merged model is quantized with QLoRA's defaults.
                error.WriteLine($"warning: {QLoraStrategy.RequantizeWarning}");
                ModelQuantizer.Quantize(model);
            }
        }

        HuggingFaceModel.Save(model, outputDirectory);
        TokenizerFiles.CopyTokenizerFiles(directory, outputDirectory);
        output.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"parameters: {model.CountParameters().Total:N0}"));
        output.WriteLine(QuantizationFlags.Describe(model) ?? $"dtype: {FineTuning.Core.Models.ModelConfig.DtypeName(model.DType)}");
        output.WriteLine($"merged: {outputDirectory}");
        return 0;
    }
}
