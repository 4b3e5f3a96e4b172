using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tokenization;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune merge &lt;model-dir&gt; --adapter &lt;dir&gt; --out &lt;dir&gt;</c>: folds the adapter into the base weights and
/// writes a plain Hugging Face model folder (config, safetensors, the base's tokenizer files).
/// </summary>
internal sealed class MergeCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>();

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var adapter = commandLine.String("adapter") ?? throw new UsageException("merge needs --adapter <dir>.");
        var outputDirectory = commandLine.String("out") ?? throw new UsageException("merge needs --out <dir>.");
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        commandLine.RejectUnknown(1);
        if (Path.GetFullPath(outputDirectory) == Path.GetFullPath(directory))
        {
            throw new UsageException("--out must differ from the base model folder.");
        }

        using var model = HuggingFaceModel.Load(directory, new ModelLoadOptions { Device = device, DType = dtype });
        var strategy = AdapterLoader.Load(adapter, model);
        if (!strategy.SupportsMerge)
        {
            throw new UsageException($"A {strategy.Method} adapter cannot be merged into the base weights.");
        }

        strategy.MergeAndUnload();
        HuggingFaceModel.Save(model, outputDirectory);
        TokenizerFiles.CopyTokenizerFiles(directory, outputDirectory);
        output.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"parameters: {model.CountParameters().Total:N0}"));
        output.WriteLine($"merged: {outputDirectory}");
        return 0;
    }
}
