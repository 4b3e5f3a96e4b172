using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Samples;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;

namespace FineTuning.Core.Tests.Cli;

/// <summary>A random tiny base with a prompt-tuning and a prefix-tuning adapter trained on the word map by <c>finetune train</c>.</summary>
public sealed class CliPromptLearningAdapters : CliFixture
{
    public CliPromptLearningAdapters()
    {
        Prompt = Folder("prompt");
        PromptOutput = Succeed("train", Base, "--method", "prompt", "--virtual-tokens", "6", "--init-text", "map red = apple", "--data", WordMap.TrainPath,
            "--out", Prompt, "--max-steps", "3", "--batch-size", "8", "--lr", "0.1", "--schedule", "constant");
        Prefix = Folder("prefix");
        PrefixOutput = Succeed("train", Base, "--method", "prefix", "--virtual-tokens", "5", "--prefix-projection", "--encoder-hidden-size", "16",
            "--data", WordMap.TrainPath, "--out", Prefix, "--max-steps", "3", "--batch-size", "8", "--lr", "0.05", "--schedule", "constant", "--packing");
    }

    /// <summary>6 virtual tokens, TEXT init.</summary>
    public string Prompt { get; }

    public string PromptOutput { get; }

    /// <summary>5 virtual tokens through an MLP of width 16, trained on packed rows.</summary>
    public string Prefix { get; }

    public string PrefixOutput { get; }
}

public sealed class CliPromptLearningTests(CliPromptLearningAdapters adapters) : IClassFixture<CliPromptLearningAdapters>
{
    // Tiny preset: tied 50257×64 embeddings; per layer q,o 64×64, k,v 64×32, MLP 3×64×176, two norms; final norm.
    private static readonly long TinyTotal = (50257L * 64) + (2 * ((2 * 64 * 64) + (2 * 64 * 32) + (3 * 64 * 176) + (2 * 64))) + 64;

    private static double EvalLoss(string model, params string[] extra) => CliFineTuningTests.Eval(model, extra).Loss;

    private static string Count(long value) => CliFineTuningTests.Count(value);

    // PEFT's MetaMathQA runs on meta-llama/Llama-3.2-3B (3,212,749,824 parameters): prompt tuning 200 tokens = 614,400,
    // prefix tuning 200 tokens = 11,468,800; the percentages are PEFT's formula on these counts.
    [Theory]
    [InlineData("prompt --virtual-tokens 200", 614_400L, "0.0191")]
    [InlineData("prefix --virtual-tokens 200", 11_468_800L, "0.3557")]
    public void Inspect_prints_PEFTs_line_for_Llama_3_2_3B(string method, long trainable, string percent)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File("config.json"), PublishedConfigs.Llama32_3B);
        var output = Succeed(["inspect", temp.Path, "--method", .. method.Split(' ')]);
        Assert.Contains($"method: {method.Split(' ')[0]}", output);
        Assert.Equal($"trainable params: {Count(trainable)} || all params: {Count(3_212_749_824L + trainable)} || trainable%: {percent}", LastLine(output));
    }

    [Fact]
    public void Inspect_with_text_init_on_a_folder_with_weights_reads_its_tokenizer()
    {
        var output = Succeed("inspect", adapters.Base, "--method", "prompt", "--init-text", "map red =");
        Assert.Equal($"trainable params: 1,280 || all params: {Count(TinyTotal + 1280)} || trainable%: {100.0 * 1280 / (TinyTotal + 1280):F4}", LastLine(output));
    }

    [Fact]
    public void Train_prints_the_parameter_line_and_writes_PEFT_folders()
    {
        // Prompt: 6 × 64. Prefix with projection (kv_dim 32, hidden 16, 2 layers): 5·32 + (32·16 + 16) + (16·128 + 128).
        const long prefixParameters = (5 * 32) + ((32 * 16) + 16) + ((16 * 128) + 128);
        Assert.Equal($"trainable params: 384 || all params: {Count(TinyTotal + 384)} || trainable%: {100.0 * 384 / (TinyTotal + 384):F4}", Lines(adapters.PromptOutput)[0]);
        Assert.Equal($"trainable params: {Count(prefixParameters)} || all params: {Count(TinyTotal + prefixParameters)} || trainable%: {100.0 * prefixParameters / (TinyTotal + prefixParameters):F4}", Lines(adapters.PrefixOutput)[0]);
        Assert.Equal($"saved: {adapters.Prompt}", LastLine(adapters.PromptOutput));

        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapters.Prompt, AdapterLoader.ConfigFileName))))
        {
            var root = config.RootElement;
            Assert.Equal("PROMPT_TUNING", root.GetProperty("peft_type").GetString());
            Assert.Equal("TEXT", root.GetProperty("prompt_tuning_init").GetString());
            Assert.Equal("map red = apple", root.GetProperty("prompt_tuning_init_text").GetString());
            Assert.Equal(adapters.Base, root.GetProperty("tokenizer_name_or_path").GetString());
            Assert.Equal(64, root.GetProperty("token_dim").GetInt32());
        }

        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(adapters.Prefix, AdapterLoader.ConfigFileName))))
        {
            var root = config.RootElement;
            Assert.Equal("PREFIX_TUNING", root.GetProperty("peft_type").GetString());
            Assert.True(root.GetProperty("prefix_projection").GetBoolean());
            Assert.Equal(16, root.GetProperty("encoder_hidden_size").GetInt32());
            Assert.Equal(32, root.GetProperty("token_dim").GetInt32());
            Assert.Equal(2, root.GetProperty("num_attention_heads").GetInt32());
        }

        using var prompt = new SafetensorsReader(Path.Combine(adapters.Prompt, PeftAdapterFiles.WeightsFileName));
        Assert.Equal([6L, 64], prompt.GetInfo(PromptLearningStrategy.EmbeddingsKey).Shape.ToArray());
        using var prefix = new SafetensorsReader(Path.Combine(adapters.Prefix, PeftAdapterFiles.WeightsFileName));
        Assert.Equal([5L, 2 * 2 * 32], prefix.GetInfo(PromptLearningStrategy.EmbeddingsKey).Shape.ToArray());
    }

    [Fact]
    public void Eval_and_generate_apply_the_adapters()
    {
        var plain = EvalLoss(adapters.Base);
        foreach (var adapter in new[] { adapters.Prompt, adapters.Prefix })
        {
            var adapted = EvalLoss(adapters.Base, "--adapter", adapter);
            Assert.True(Math.Abs(adapted - plain) > 1e-2, $"{adapter} changed the loss by only {adapted - plain}");
            Assert.StartsWith("map red blue green =", Succeed("generate", adapters.Base, "--prompt", "map red blue green =", "--max-new-tokens", "3", "--adapter", adapter));
        }

        var (code, _, error) = Run("merge", adapters.Base, "--adapter", adapters.Prompt, "--out", adapters.Folder("merged-prompt"));
        Assert.NotEqual(0, code);
        Assert.Contains("cannot be merged", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Packing_with_prompt_tuning_is_refused()
    {
        var output = adapters.Folder("packed-prompt");
        var (code, _, error) = Run("train", adapters.Base, "--method", "prompt", "--data", WordMap.TrainPath, "--out", output, "--max-steps", "1", "--packing");
        Assert.Equal(1, code);
        Assert.Contains("TrainingOptions.Packing", error, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(output, LoraAdapterConfig.FileName)));
    }

    [Theory]
    [InlineData("init text with prefix", "--init-text", "--method", "prefix", "--init-text", "hello")]
    [InlineData("projection with prompt", "--prefix-projection", "--method", "prompt", "--prefix-projection")]
    [InlineData("hidden size without projection", "--encoder-hidden-size", "--method", "prefix", "--encoder-hidden-size", "8")]
    [InlineData("zero init with prompt", "--init", "--method", "prompt", "--init", "zero")]
    [InlineData("virtual tokens with lora", "--virtual-tokens", "--method", "lora", "--virtual-tokens", "4")]
    [InlineData("no virtual tokens", "--virtual-tokens", "--method", "prompt", "--virtual-tokens", "0")]
    public void Usage_errors_exit_with_code_2_and_name_the_option(string mistake, string option, params string[] method)
    {
        var output = adapters.Folder("not-written");
        AssertUsageError(mistake, option, output, ["train", adapters.Base, "--data", WordMap.TrainPath, "--out", output, .. method]);
    }
}
