using System.Globalization;
using System.Text.Json;
using FineTuning.Core.Data;
using FineTuning.Core.IO;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Tests.Models;
using TorchSharp;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Cli;

public sealed class CliTests : IDisposable
{
    private readonly TempDirectory temp = new();

    private string root => temp.Path;

    public void Dispose() => temp.Dispose();

    private string InitTiny(string name = "model")
    {
        var dir = Path.Combine(root, name);
        var (code, _, err) = Run("init", dir, "--preset", "tiny", "--seed", "3");
        Assert.True(code == 0, err);
        return dir;
    }

    [Fact]
    public void Init_writes_a_hugging_face_folder_and_inspect_prints_the_peft_line_last()
    {
        var dir = InitTiny();
        foreach (var file in new[] { "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json" })
        {
            Assert.True(File.Exists(Path.Combine(dir, file)), file);
        }

        // Tiny preset by formula: tied embeddings 50257×64; per layer q,o 64×64, k,v 64×32, MLP 3×64×176, two norms.
        long perLayer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64;
        long total = 50257L * 64 + 2 * perLayer + 64;
        var (code, output, _) = Run("inspect", dir);
        Assert.Equal(0, code);
        Assert.Equal($"trainable params: {total.ToString("N0", CultureInfo.InvariantCulture)} || all params: {total.ToString("N0", CultureInfo.InvariantCulture)} || trainable%: 100.0000", LastLine(output));
        Assert.Contains("model_type: llama", output);
    }

    [Fact]
    public void Inspect_of_a_config_only_folder_counts_on_the_meta_device()
    {
        var dir = Path.Combine(root, "llama2-7b");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), PublishedConfigs.Llama2_7B);
        var (code, output, _) = Run("inspect", dir);
        Assert.Equal(0, code);
        Assert.Contains("meta", output);
        Assert.Equal("trainable params: 6,738,415,616 || all params: 6,738,415,616 || trainable%: 100.0000", LastLine(output));
    }

    [Fact]
    public void Eval_reports_the_mean_cross_entropy_over_predicted_tokens()
    {
        var dir = InitTiny();
        var data = Path.Combine(root, "eval.jsonl");
        File.WriteAllLines(data, ["{\"text\": \"Hello world, this is a test.\"}", "", "{\"text\": \"Another line\"}"]);
        var (code, output, err) = Run("eval", dir, "--data", data, "--json");
        Assert.True(code == 0, err);
        using var json = JsonDocument.Parse(LastLine(output));
        var loss = json.RootElement.GetProperty("loss").GetDouble();
        var tokens = json.RootElement.GetProperty("tokens").GetInt64();
        var perplexity = json.RootElement.GetProperty("perplexity").GetDouble();

        // Recompute independently: GPT-2 ids (no BOS: the GPT-2 config does not ask for it), log-softmax by hand.
        var gpt2 = TokenizerLoader.Gpt2();
        using var model = HuggingFaceModel.Load(dir);
        double nll = 0;
        long count = 0;
        foreach (var text in new[] { "Hello world, this is a test.", "Another line" })
        {
            var ids = gpt2.Encode(text);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var logits = model.call(FineTuning.Core.Models.ModelInput.FromIds(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Count]))).Logits[0];
            for (var t = 0; t < ids.Count - 1; t++)
            {
                var row = logits[t].to(ScalarType.Float64);
                nll += (row.exp().sum().log() - row[ids[t + 1]]).item<double>();
                count++;
            }
        }

        Assert.Equal(count, tokens);
        Assert.Equal(nll / count, loss, 4);
        Assert.Equal(Math.Exp(loss), perplexity, 6);
    }

    [Fact]
    public void A_malformed_jsonl_line_is_reported_with_its_number()
    {
        var dir = InitTiny();
        var data = Path.Combine(root, "bad.jsonl");
        File.WriteAllLines(data, ["{\"text\": \"fine\"}", "{\"prompt\": \"no completion\"}"]);
        var (code, _, err) = Run("eval", dir, "--data", data);
        Assert.Equal(1, code);
        Assert.Contains("line 2", err);
        Assert.Contains("bad.jsonl", err);
    }

    [Fact]
    public void Generate_continues_the_prompt_reproducibly_with_a_seed()
    {
        var dir = InitTiny();
        string[] args = ["generate", dir, "--prompt", "Once upon a time", "--max-new-tokens", "8", "--temperature", "0.9", "--top-p", "0.9", "--seed", "11"];
        var first = Run(args);
        var second = Run(args);
        Assert.Equal(0, first.Code);
        Assert.StartsWith("Once upon a time", first.Out);
        Assert.Equal(first.Out, second.Out);
        var greedy = Run("generate", dir, "--prompt", "Once upon a time", "--max-new-tokens", "8");
        Assert.Equal(0, greedy.Code);
    }

    [Theory]
    [InlineData("inspect", "{dir}", "--no-such-option", "1")]
    [InlineData("init", "{root}/x", "--preset", "huge")]
    [InlineData("generate", "{dir}", "--prompt", "x", "--top-p", "1.5")]
    [InlineData("frobnicate")]
    public void Usage_errors_exit_with_code_2_and_say_why(params string[] template)
    {
        var dir = InitTiny();
        var args = template.Select(a => a.Replace("{dir}", dir).Replace("{root}", root)).ToArray();
        var (code, _, err) = Run(args);
        Assert.Equal(2, code);
        Assert.StartsWith("error: ", err);
    }

    [Fact]
    public void A_missing_config_is_an_error_naming_the_file()
    {
        var (code, _, err) = Run("inspect", Path.Combine(root, "nowhere"));
        Assert.Equal(1, code);
        Assert.Contains("config.json", err);
    }
}
