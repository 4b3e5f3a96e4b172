using System.Globalization;
using FineTuning.Core.IO;
using FineTuning.Core.Quantization;
using FineTuning.Core.Tokenization;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune quantize &lt;model-dir&gt; --out &lt;dir&gt; [--type nf4|fp4|int4] [--double-quant|--no-double-quant]
/// [--blocksize 64] [--compute-dtype bfloat16]</c>: writes a 4-bit copy of a model folder in bitsandbytes' layout (a
/// "-bnb-4bit" folder Transformers loads), with the tokenizer files; prints bits per parameter and sizes.
/// </summary>
internal sealed class QuantizeCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>(QuantizationFlags.FlagNames);

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var outputDirectory = commandLine.String("out") ?? throw new UsageException("quantize needs --out <dir>.");
        var options = QuantizationFlags.Read(commandLine, "type", out _);
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        commandLine.RejectUnknown(1);
        if (Path.GetFullPath(outputDirectory) == Path.GetFullPath(directory))
        {
            throw new UsageException("--out must differ from the model folder.");
        }

        if (QuantizedModelFiles.IsQuantizedFolder(directory))
        {
            throw new InvalidDataException($"{directory} is already quantized (its config.json has a quantization_config).");
        }

        using var model = HuggingFaceModel.Load(directory, new ModelLoadOptions { Device = device, DType = dtype });
        var total = model.CountParameters().Total;
        var quantized = ModelQuantizer.Quantize(model, options);
        HuggingFaceModel.Save(model, outputDirectory);
        TokenizerFiles.CopyTokenizerFiles(directory, outputDirectory);

        static long WeightBytes(string folder) => Directory.EnumerateFiles(folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
        var before = WeightBytes(directory);
        var after = WeightBytes(outputDirectory);
        output.WriteLine($"quantized: {quantized.Count} projections ({options}); embeddings, norms and lm_head kept in {FineTuning.Core.Models.ModelConfig.DtypeName(model.DType)}");
        output.WriteLine(QuantizationFlags.Describe(model));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"bits/param (whole folder): {after * 8.0 / total:F3}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"size: {Mib(before):F2} MiB -> {Mib(after):F2} MiB ({100.0 * after / before:F1}%)"));
        output.WriteLine($"saved: {outputDirectory}");
        return 0;
    }

    private static double Mib(long bytes) => bytes / (1024.0 * 1024.0);
}
