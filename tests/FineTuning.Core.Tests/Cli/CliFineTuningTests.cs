using System.Globalization;
using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Samples;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;

namespace FineTuning.Core.Tests.Cli;

/// <summary>A random tiny base and two LoRA adapters trained on the word map by <c>finetune train</c>, shared by the tests.</summary>
public sealed class CliAdapters : CliFixture
{
    public CliAdapters()
    {
        First = Folder("first");
        FirstOutput = Succeed("train", Base, "--method", "lora", "--r", "4", "--data", WordMap.TrainPath, "--eval", WordMap.EvalPath, "--out", First,
            "--max-steps", "3", "--batch-size", "8", "--lr", "2e-2", "--schedule", "constant", "--log-every", "1");
        Second = Folder("second");
        Succeed("train", Base, "--method", "lora", "--r", "2", "--targets", "all-linear", "--data", WordMap.TrainPath, "--out", Second,
            "--max-steps", "3", "--batch-size", "8", "--lr", "2e-2", "--seed", "2");
    }

    /// <summary>r 4 (alpha 8 by default), q_proj and v_proj, validated on eval.jsonl.</summary>
    public string First { get; }

    /// <summary>What <c>train</c> printed for <see cref="First"/>.</summary>
    public string FirstOutput { get; }

    /// <summary>r 2, every projection.</summary>
    public string Second { get; }

}

public sealed class CliFineTuningTests(CliAdapters adapters) : IClassFixture<CliAdapters>
{
    internal static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>Runs <c>eval --completion-only --json</c> and returns (loss, exact match).</summary>
    internal static (double Loss, double ExactMatch) Eval(string model, params string[] extra)
    {
        var output = Succeed(["eval", model, "--data", WordMap.EvalPath, "--completion-only", "--json", .. extra]);
        using var json = JsonDocument.Parse(LastLine(output));
        return (json.RootElement.GetProperty("loss").GetDouble(), json.RootElement.GetProperty("exact_match").GetDouble());
    }

    private static string Generate(string model, params string[] extra) =>
        Succeed(["generate", model, "--prompt", "map red blue green =", "--max-new-tokens", "3", .. extra]);

    // Llama-2-7B: 32 layers, hidden 4096, MLP 11008, vocabulary 32000, untied head; 6,738,415,616 parameters.
    // LoRA adds r·(in + out) per wrapped projection: q, v → 2·8192; all seven → 4·8192 + 3·(4096 + 11008).
    [Theory]
    [InlineData("lora --r 8 --targets q_proj,v_proj", 32L * 8 * 2 * 8192, 32L * 8 * 2 * 8192, "0.0622")]
    [InlineData("lora --r 16 --targets all-linear", 32L * 16 * ((4 * 8192) + (3 * 15104)), 32L * 16 * ((4 * 8192) + (3 * 15104)), "0.5898")]
    [InlineData("sft", 6_738_415_616L, 0L, "100.0000")]
    [InlineData("sft --freeze-layers 32", (2L * 32000 * 4096) + 4096, 0L, "3.8904")]
    public void Inspect_with_a_method_prints_PEFTs_line_for_a_published_config(string method, long trainable, long added, string percent)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File("config.json"), PublishedConfigs.Llama2_7B);
        var output = Succeed(["inspect", temp.Path, "--method", .. method.Split(' ')]);
        Assert.Contains($"method: {method.Split(' ')[0]}", output);
        Assert.Equal($"trainable params: {Count(trainable)} || all params: {Count(6_738_415_616L + added)} || trainable%: {percent}", LastLine(output));
    }

    [Fact]
    public void Train_prints_the_parameter_line_and_a_summary_and_writes_a_peft_adapter()
    {
        // Tiny preset: tied 50257×64 embeddings, per layer q,o 64×64, k,v 64×32, MLP 3×64×176, two norms; final norm.
        // LoRA r 4 on q (64→64) and v (64→32) of 2 layers: 2·4·(128 + 96) = 1,792.
        long total = (50257L * 64) + (2 * ((2 * 64 * 64) + (2 * 64 * 32) + (3 * 64 * 176) + (2 * 64))) + 64 + 1792;
        var lines = Lines(adapters.FirstOutput);
        Assert.Equal($"trainable params: 1,792 || all params: {Count(total)} || trainable%: {100.0 * 1792 / total:F4}", lines[0]);
        Assert.Equal("steps: 3", lines[1]);
        Assert.Matches(@"^train_loss: \d+\.\d{6}$", lines[2]);
        Assert.Matches(@"^best_eval_loss: \d+\.\d{6}$", lines[3]);
        Assert.StartsWith("tokens_per_second: ", lines[4]);
        Assert.Equal($"saved: {adapters.First}", lines[^1]);

        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapters.First, LoraAdapterConfig.FileName)));
        Assert.Equal("LORA", config.RootElement.GetProperty("peft_type").GetString());
        Assert.Equal(4, config.RootElement.GetProperty("r").GetInt32());
        Assert.Equal(8, config.RootElement.GetProperty("lora_alpha").GetDouble());
        Assert.Equal(["q_proj", "v_proj"], config.RootElement.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()!).Order());
        using var weights = new SafetensorsReader(Path.Combine(adapters.First, PeftAdapterFiles.WeightsFileName));
        Assert.Equal(8, weights.TensorNames.Count());
        Assert.Equal(1792, weights.Tensors.Values.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Eval_and_generate_with_an_adapter_match_the_merged_folder()
    {
        var merged = adapters.Folder("merged-first");
        var output = Succeed("merge", adapters.Base, "--adapter", adapters.First, "--out", merged);
        Assert.Equal($"merged: {merged}", LastLine(output));
        Assert.False(File.Exists(Path.Combine(merged, LoraAdapterConfig.FileName)));

        var onTheFly = Eval(adapters.Base, "--adapter", adapters.First);
        var folded = Eval(merged);
        var plain = Eval(adapters.Base);
        Assert.Equal(onTheFly.Loss, folded.Loss, 1e-4);
        Assert.Equal(onTheFly.ExactMatch, folded.ExactMatch);
        Assert.True(Math.Abs(onTheFly.Loss - plain.Loss) > 1e-2, $"the adapter changed the loss by only {onTheFly.Loss - plain.Loss}");

        Assert.Equal(Generate(merged), Generate(adapters.Base, "--adapter", adapters.First));
        Assert.StartsWith("map red blue green =", Generate(adapters.Base, "--adapter", adapters.First));
    }

    [Fact]
    public void Several_adapters_add_up_like_merging_one_after_the_other()
    {
        var first = adapters.Folder("merged-1");
        var both = adapters.Folder("merged-1-2");
        Succeed("merge", adapters.Base, "--adapter", adapters.First, "--out", first);
        Succeed("merge", first, "--adapter", adapters.Second, "--out", both);

        var combined = Eval(adapters.Base, "--adapter", adapters.First, "--adapter", adapters.Second);
        Assert.Equal(Eval(both).Loss, combined.Loss, 1e-4);
        Assert.True(Math.Abs(Eval(first).Loss - combined.Loss) > 1e-2, "the second adapter changed nothing");
        Assert.Equal(Generate(both), Generate(adapters.Base, "--adapter", adapters.First, "--adapter", adapters.Second));
    }

    [Theory]
    [InlineData("missing --data", "--data", "train", "{base}", "--method", "lora", "--out", "{out}")]
    [InlineData("missing --method", "--method", "train", "{base}", "--data", "{train}", "--out", "{out}")]
    [InlineData("unknown method", "--method", "train", "{base}", "--data", "{train}", "--method", "bogus", "--out", "{out}")]
    [InlineData("unknown schedule", "--schedule", "train", "{base}", "--data", "{train}", "--method", "lora", "--out", "{out}", "--schedule", "exponential")]
    [InlineData("rank 0", "--r", "train", "{base}", "--data", "{train}", "--method", "lora", "--r", "0", "--out", "{out}")]
    [InlineData("merge without --adapter", "--adapter", "merge", "{base}", "--out", "{out}")]
    public void Usage_errors_exit_with_code_2_and_name_the_option(string mistake, string option, params string[] template)
    {
        var output = adapters.Folder("not-written");
        AssertUsageError(mistake, option, output, [.. template.Select(a => a.Replace("{base}", adapters.Base).Replace("{train}", WordMap.TrainPath).Replace("{out}", output))]);
    }
}
