using System.Globalization;
using System.Text.Json;
using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.IO;
using FineTuning.Core.Tokenization;

namespace FineTuning.Cli.Commands;

/// <summary>
/// <c>finetune eval &lt;model-dir&gt; --data file.jsonl [--json] [--template NAME]</c>: mean cross-entropy over all
/// predicted tokens of the file (each line scored on its own) and the perplexity. With <c>--json</c> the last line
/// is <c>{"loss": …, "perplexity": …, "tokens": …}</c>.
/// </summary>
internal sealed class EvalCommand : ICommand
{
    public IReadOnlySet<string> Flags { get; } = new HashSet<string> { "json", "completion-only" };

    public int Execute(CommandLine commandLine, TextWriter output, TextWriter error)
    {
        var directory = commandLine.Positional(0, "model-dir");
        var dataPath = commandLine.String("data") ?? throw new UsageException("eval needs --data file.jsonl.");
        var json = commandLine.Flag("json");
        var templateName = commandLine.String("template");
        var device = CommonOptions.Device(commandLine);
        var dtype = CommonOptions.DType(commandLine);
        var adapters = commandLine.Strings("adapter");
        var completionOnly = commandLine.Flag("completion-only");
        commandLine.RejectUnknown(1);

        var tokenizer = TokenizerLoader.Load(directory);
        var template = ChatTemplates.Resolve(templateName, tokenizer.Config);
        var examples = JsonlDataset.Load(dataPath);
        // Each line is scored as the tokenizer encodes it: BOS only where tokenizer_config.json asks for it.
        var formatter = new ExampleFormatter(tokenizer, template, new ExampleFormatterOptions { AppendEosToText = false });
        var tokenized = formatter.FormatAll(examples);
        using var model = ModelLoading.Load(directory, device, dtype, adapters);
        var result = LanguageModelEvaluator.Evaluate(model, tokenized, trainableTokensOnly: completionOnly);

        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"examples: {result.Examples}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"tokens: {result.Tokens}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"loss: {result.Loss:F6}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"perplexity: {result.Perplexity:F4}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"token_accuracy: {result.TokenAccuracy:F4}"));
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"exact_match: {result.ExactMatch:F4}"));
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new { loss = result.Loss, perplexity = result.Perplexity, tokens = result.Tokens, token_accuracy = result.TokenAccuracy, exact_match = result.ExactMatch }));
        }

        return 0;
    }
}
