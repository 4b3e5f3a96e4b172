using FineTuning.Core.Generation;
using FineTuning.Core.Tokenization;

namespace FineTuning.Cli.Commands;

/// <summary><c>finetune generate &lt;model-dir&gt; --prompt TEXT [--adapter DIR]... [...]</c>: prints the continuation.</summary>
internal sealed class GenerateCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string>();

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var prompt = commandLine.String("prompt") ?? throw new UsageException("generate needs --prompt TEXT.");
        var options = new GenerationOptions
        {
            MaxNewTokens = commandLine.Int("max-new-tokens", min: 0) ?? 64,
            Temperature = commandLine.Double("temperature") ?? 0,
            TopK = commandLine.Int("top-k", min: 0) ?? 0,
            TopP = commandLine.Double("top-p") ?? 1.0,
            Seed = commandLine.Long("seed"),
        };
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        var adapters = commandLine.Strings("adapter");
        commandLine.RejectUnknown(1);
        try
        {
            options.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new UsageException(e.Message);
        }

        var tokenizer = TokenizerLoader.Load(directory);
        using var model = ModelLoading.Load(directory, device, dtype, adapters);
        var promptIds = tokenizer.Encode(prompt).ToList();
        if (promptIds.Count == 0)
        {
            promptIds.Add(tokenizer.BosTokenId ?? tokenizer.EosTokenId ?? throw new UsageException("The prompt is empty and the tokenizer has no BOS/EOS token to start from."));
        }

        var stop = model.Config.EosTokenIds.ToList();
        if (tokenizer.EosTokenId is { } eos && !stop.Contains(eos))
        {
            stop.Add(eos);
        }

        var generated = TextGenerator.Generate(model, promptIds, options with { StopTokenIds = stop });
        output.WriteLine(prompt + tokenizer.Decode(generated, skipSpecialTokens: true));
        return 0;
    }
}
