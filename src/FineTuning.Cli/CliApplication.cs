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
          inspect <model-dir> [--method sft|lora|qlora|prompt|prefix|adapters|opd [method options]]
                 print the config summary and PEFT's parameter line (meta device when only config.json exists);
                 a 4-bit folder also gets a "quantization:" line
          quantize <model-dir> --out <dir> [--type nf4|fp4|int4] [--double-quant|--no-double-quant] [--blocksize 64]
                [--compute-dtype bfloat16|float16|float32]
                 write a 4-bit copy in bitsandbytes' layout (a "-bnb-4bit" folder); prints bits/param and sizes
          train <model-dir> --data train.jsonl [--eval eval.jsonl] --method sft|lora|qlora|prompt|prefix|adapters|opd --out <dir>
                [--lr X] [--epochs N] [--max-steps N] [--batch-size N] [--grad-accum N] [--seq-len N] [--seed N]
                [--optimizer adamw|paged-adamw|adamw-8bit|paged-adamw-8bit]
                [--schedule constant|linear|cosine] [--warmup-steps N] [--warmup-ratio X] [--weight-decay X]
                [--max-grad-norm X] [--packing] [--gradient-checkpointing] [--all-tokens] [--template NAME]
                [--eval-every N] [--early-stopping PATIENCE] [--checkpoint-every N] [--resume <checkpoint-dir>]
                 fine-tune; writes an adapter folder (lora, qlora) or a model folder (sft) to --out
          merge <model-dir> --adapter DIR --out <dir> [--requantize]
                 fold an adapter into the base weights and write a plain Hugging Face model folder; on a 4-bit base
                 the weights are dequantized (16-bit folder) unless --requantize keeps them 4-bit (lossy)
          eval <model-dir> --data file.jsonl [--adapter DIR]... [--completion-only] [--json] [--template NAME]
                 mean cross-entropy per predicted token, perplexity, token accuracy and exact match, each line
                 scored on its own (--completion-only: only completion/assistant tokens, as training does)
          generate <model-dir> --prompt TEXT [--adapter DIR]... [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed N]
                 continue a prompt (greedy when temperature is 0, the default)

        Method options: sft: [--freeze-embeddings] [--freeze-layers N]
                        lora: [--r N] [--alpha X (default 2r)] [--dropout X] [--targets a,b|all-linear|regex:PATTERN]
                              [--rslora] [--dora]
                        qlora: the lora options (default --r 16 --targets all-linear) and [--quant-type nf4|fp4|int4]
                              [--blocksize N] [--no-double-quant] [--compute-dtype bfloat16|float16|float32]
                        prompt: [--virtual-tokens N (default 20)] [--init random|text|sample-vocab] [--init-text "..."]
                              (--init-text implies --init text)
                        prefix: [--virtual-tokens N (default 20)] [--init random|zero] [--prefix-projection
                              [--encoder-hidden-size N]]
                        adapters: [--reduction-factor N (default 16)] [--placement pfeiffer|houlsby]
                              [--non-linearity relu|swish|gelu|tanh] [--dropout X]
                        opd (Optimal Parameter Decoupling, a library-defined method; NOT on-policy distillation):
                              --general-data general.jsonl [--budget 0.01|N] [--granularity element|tensor|layer]
                              [--core-fraction K] [--beta B] [--anchor L] [--calibration N (examples scored, default 64)]
                              [--report report.json]; trains a sparse
                              delta (opd_config.json + opd_delta.safetensors); inspect needs --data to score and select
        Several --adapter folders (LoRA) are active together: their updates add up. Adapters work on 16-bit and
        4-bit bases alike.

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
                "quantize" => new QuantizeCommand(),
                "train" => new TrainCommand(),
                "merge" => new MergeCommand(),
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
