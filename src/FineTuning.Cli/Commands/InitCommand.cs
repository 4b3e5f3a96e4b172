using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Tokenization;
using TorchSharp;

namespace FineTuning.Cli.Commands;

/// <summary><c>finetune init &lt;out-dir&gt; --preset tiny|small [--seed N]</c>.</summary>
internal sealed class InitCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>();

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "out-dir");
        var presetName = commandLine.String("preset") ?? throw new UsageException("init needs --preset tiny|small.");
        var seed = commandLine.Long("seed") ?? 42;
        var dtype = CommonOptions.DType(commandLine) ?? torch.ScalarType.Float32;
        commandLine.RejectUnknown(1);
        ModelConfig config;
        try
        {
            config = ModelPresets.Get(presetName) with { TorchDtype = ModelConfig.DtypeName(dtype) };
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }

        using var model = CausalLanguageModel.Create(config, torch.CPU, dtype);
        model.InitializeWeights(seed);
        HuggingFaceModel.Save(model, directory);
        TokenizerFiles.WriteGpt2(directory);
        var counts = model.CountParameters();
        output.WriteLine($"Wrote the '{presetName}' preset ({counts.Total:N0} parameters, {config.TorchDtype}, seed {seed}) to {Path.GetFullPath(directory)}");
        return 0;
    }
}
