using FineTuning.Cli.Commands;
using FineTuning.Core.Backend;

namespace FineTuning.Cli;

/// <summary>The <c>finetune</c> command: dispatches to a sub-command and maps errors to exit codes (1 = failure, 2 = usage).</summary>
public static class CliApplication
{
    private const string Usage = """
        usage: finetune <command> [options]

          init <out-dir> --preset tiny|small [--seed N]
                 write a randomly initialised LLaMA-architecture model (config, safetensors, GPT-2 tokenizer)
          inspect <model-dir>
                 print the config summary and PEFT's parameter line (meta device when only config.json exists)
          eval <model-dir> --data file.jsonl [--json] [--device D] [--dtype T]
                 mean cross-entropy per predicted token and perplexity, each line scored on its own
          generate <model-dir> --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed N]
                 continue a prompt (greedy when temperature is 0, the default)

        Common options: --device cpu|cuda:N (default cpu), --dtype float32|bfloat16|float16 (default: the model's).
        """;

    /// <summary>Runs one command line.</summary>
    /// <param name="args">The arguments after the program name.</param>
    /// <param name="output">Where results go.</param>
    /// <param name="error">Where errors and progress go.</param>
    /// <returns>The process exit code.</returns>
    public static int Run(string[] args, TextWriter output, TextWriter error)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            output.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            ICommand command = args[0] switch
            {
                "init" => new InitCommand(),
                "inspect" => new InspectCommand(),
                "eval" => new EvalCommand(),
                "generate" => new GenerateCommand(),
                _ => throw new UsageException($"Unknown command '{args[0]}'."),
            };
            var commandLine = new CommandLine(args.Skip(1), command.Flags);
            return command.Execute(commandLine, output, error);
        }
        catch (UsageException e)
        {
            error.WriteLine($"error: {e.Message}");
            error.WriteLine(Usage);
            return 2;
        }
        catch (TorchBackendUnavailableException e)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException or FormatException or FineTuning.Core.Models.ModelConfigException)
        {
            error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
