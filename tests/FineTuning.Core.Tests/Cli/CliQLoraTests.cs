using System.Globalization;
using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Tests.Samples;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;

namespace FineTuning.Core.Tests.Cli;

/// <summary>A random tiny base, its 4-bit copy by <c>finetune quantize</c>, and a QLoRA adapter trained on the copy, shared by the tests.</summary>
public sealed class CliQLoraModels : CliFixture
{
    public CliQLoraModels()
    {
        Quantized = Folder("q4");
        QuantizeOutput = Succeed("quantize", Base, "--out", Quantized);
        Adapter = Folder("adapter");
        TrainOutput = Succeed("train", Quantized, "--method", "qlora", "--r", "4", "--data", WordMap.TrainPath, "--out", Adapter,
            "--max-steps", "3", "--batch-size", "8", "--lr", "2e-2", "--schedule", "constant", "--optimizer", "paged-adamw", "--checkpoint-every", "3");
    }

    /// <summary>NF4, double quantization, blocks of 64, bf16 compute (the defaults).</summary>
    public string Quantized { get; }

    public string QuantizeOutput { get; }

    /// <summary>QLoRA r 4 (alpha 8) on every projection of <see cref="Quantized"/>, paged AdamW, a checkpoint at step 3.</summary>
    public string Adapter { get; }

    public string TrainOutput { get; }
}

public sealed class CliQLoraTests(CliQLoraModels models) : IClassFixture<CliQLoraModels>
{
    // Tiny preset: tied 50257×64 embeddings, two norms per layer and a final norm stay in full precision.
    private const long FullPrecision = (50257L * 64) + (2 * 2 * 64) + 64;
    private const long Total = 3_308_928;

    // Per layer: q, o 64→64, k, v 64→32, gate, up 64→176, down 176→64; r·(in + out) summed.
    private const long LoraPerRankPerLayer = (2 * (64 + 64)) + (2 * (64 + 32)) + (3 * (64 + 176));

    private static string PeftLine(long trainable, long total) =>
        string.Format(CultureInfo.InvariantCulture, "trainable params: {0:N0} || all params: {1:N0} || trainable%: {2:F4}", trainable, total, 100.0 * trainable / total);

    private static double Loss(string model, params string[] extra)
    {
        var output = Succeed(["eval", model, "--data", WordMap.EvalPath, "--completion-only", "--json", .. extra]);
        using var json = JsonDocument.Parse(LastLine(output));
        return json.RootElement.GetProperty("loss").GetDouble();
    }

    [Fact]
    public void Quantize_writes_a_bnb_4bit_folder_with_the_tokenizer_and_reports_bits_and_sizes()
    {
        var lines = Lines(models.QuantizeOutput);
        Assert.Equal("quantized: 14 projections (nf4, double quant, blocksize 64, compute bfloat16); embeddings, norms and lm_head kept in float32", lines[0]);
        Assert.Matches(@"^quantization: nf4, double quant, blocksize 64, compute bfloat16 \(14 projections, \d+\.\d{3} bits/param\)$", lines[1]);
        Assert.Matches(@"^bits/param \(whole folder\): \d+\.\d{3}$", lines[2]);
        Assert.Matches(@"^size: \d+\.\d\d MiB -> \d+\.\d\d MiB \(\d+\.\d%\)$", lines[3]);
        Assert.Equal($"saved: {models.Quantized}", lines[^1]);

        Assert.True(QuantizedModelFiles.IsQuantizedFolder(models.Quantized));
        Assert.Equal(QuantizationOptions.Default, QuantizedModelFiles.ReadQuantizationConfig(models.Quantized));
        Assert.True(File.Exists(Path.Combine(models.Quantized, TokenizerLoader.TokenizerJsonFileName)));
        Assert.True(new FileInfo(Path.Combine(models.Quantized, HuggingFaceWeights.SingleFileName)).Length < new FileInfo(Path.Combine(models.Base, HuggingFaceWeights.SingleFileName)).Length);
    }

    [Fact]
    public void Inspect_loads_the_folder_as_4_bit_and_counts_it_like_PEFT()
    {
        var plain = Lines(Succeed("inspect", models.Quantized));
        Assert.Contains(plain, l => l.StartsWith("quantization: nf4, double quant, blocksize 64, compute bfloat16 (14 projections", StringComparison.Ordinal));
        Assert.Equal(PeftLine(FullPrecision, Total), plain[^1]);

        // QLoRA on the 4-bit folder, and on the 16-bit folder (quantized in memory): the same line.
        long adapters = 2 * 16 * LoraPerRankPerLayer;
        foreach (var folder in new[] { models.Quantized, models.Base })
        {
            var qlora = Lines(Succeed("inspect", folder, "--method", "qlora"));
            Assert.Contains("method: qlora", qlora);
            Assert.Contains(qlora, l => l.StartsWith("quantization: nf4", StringComparison.Ordinal));
            Assert.Equal(PeftLine(adapters, Total + adapters), qlora[^1]);
        }
    }

    [Fact]
    public void Quantize_options_reach_the_folder()
    {
        var folder = models.Folder("fp4");
        var output = Succeed("quantize", models.Base, "--out", folder, "--type", "fp4", "--no-double-quant", "--blocksize", "128");
        Assert.StartsWith("quantized: 14 projections (fp4, no double quant, blocksize 128, compute bfloat16)", output);
        Assert.Equal(new QuantizationOptions { Type = QuantizationType.FP4, DoubleQuant = false }, QuantizedModelFiles.ReadQuantizationConfig(folder));
        Assert.Contains("quantization: fp4, no double quant, blocksize 128, compute bfloat16", Succeed("inspect", folder));
    }

    [Fact]
    public void Train_with_qlora_writes_a_PEFT_adapter_and_uses_the_chosen_optimizer()
    {
        var lines = Lines(models.TrainOutput);
        long trainable = 2 * 4 * LoraPerRankPerLayer;
        Assert.Equal(PeftLine(trainable, Total + trainable), lines[0]);
        Assert.Equal("steps: 3", lines[1]);
        Assert.Equal($"saved: {models.Adapter}", lines[^1]);

        using (var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(models.Adapter, LoraAdapterConfig.FileName))))
        {
            Assert.Equal("LORA", config.RootElement.GetProperty("peft_type").GetString());
            Assert.Equal(4, config.RootElement.GetProperty("r").GetInt32());
            Assert.Equal(7, config.RootElement.GetProperty("target_modules").GetArrayLength());
        }

        using (var weights = new SafetensorsReader(Path.Combine(models.Adapter, PeftAdapterFiles.WeightsFileName)))
        {
            Assert.Equal(trainable, weights.Tensors.Values.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
        }

        using var optimizer = new SafetensorsReader(Path.Combine(models.Adapter, TrainingCheckpoints.Prefix + "3", TrainingCheckpoints.OptimizerFileName));
        Assert.Equal("paged_adamw", optimizer.Metadata["optimizer"]);
    }

    [Fact]
    public void Qlora_trains_on_a_16_bit_folder_too()
    {
        var adapter = models.Folder("from-base");
        var output = Succeed("train", models.Base, "--method", "qlora", "--r", "2", "--targets", "q_proj,v_proj", "--quant-type", "fp4", "--no-double-quant",
            "--data", WordMap.TrainPath, "--out", adapter, "--max-steps", "1", "--batch-size", "4", "--optimizer", "adamw-8bit");
        long trainable = 2 * 2 * ((64 + 64) + (64 + 32));
        Assert.Equal(PeftLine(trainable, Total + trainable), Lines(output)[0]);
        Assert.True(File.Exists(Path.Combine(adapter, PeftAdapterFiles.WeightsFileName)));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Merge_onto_the_4_bit_base_exports_16_bits_and_requantize_keeps_4_bits_with_a_warning()
    {
        var onTheFly = Loss(models.Quantized, "--adapter", models.Adapter);
        Assert.True(Math.Abs(onTheFly - Loss(models.Quantized)) > 1e-2, "the adapter changed nothing");

        var merged = models.Folder("merged16");
        var output = Lines(Succeed("merge", models.Quantized, "--adapter", models.Adapter, "--out", merged));
        Assert.Equal(["parameters: 3,308,928", "dtype: float32", $"merged: {merged}"], output);
        Assert.False(QuantizedModelFiles.IsQuantizedFolder(merged));
        Assert.True(File.Exists(Path.Combine(merged, TokenizerLoader.TokenizerJsonFileName)));

        // The merged model computes in fp32 where the 4-bit one computed in bf16: the same loss up to that rounding.
        Assert.Equal(onTheFly, Loss(merged), 2e-2 * onTheFly);

        var requantized = models.Folder("merged4");
        var (code, text, error) = Run("merge", models.Quantized, "--adapter", models.Adapter, "--out", requantized, "--requantize");
        Assert.Equal(0, code);
        Assert.Contains("warning: Merge lora module to 4-bit linear may get different generations due to rounding errors.", error);
        Assert.StartsWith("quantization: nf4, double quant, blocksize 64", Lines(text)[1]);
        Assert.True(QuantizedModelFiles.IsQuantizedFolder(requantized));
        var rounded = Loss(requantized);
        Assert.NotEqual(onTheFly, rounded);
        Assert.Equal(onTheFly, rounded, 0.1 * onTheFly);
    }

    [Fact]
    public void A_QLoRA_adapter_merges_onto_the_16_bit_base_and_runs_on_it()
    {
        var merged = models.Folder("merged-on-base");
        Succeed("merge", models.Base, "--adapter", models.Adapter, "--out", merged);
        Assert.False(QuantizedModelFiles.IsQuantizedFolder(merged));
        Assert.Equal(Loss(models.Base, "--adapter", models.Adapter), Loss(merged), 1e-4);
        Assert.StartsWith("map red blue green =", Succeed("generate", models.Base, "--adapter", models.Adapter, "--prompt", "map red blue green =", "--max-new-tokens", "2"));
    }

    [Theory]
    [InlineData("unknown optimizer", "--optimizer", "train", "{q4}", "--data", "{train}", "--method", "qlora", "--out", "{out}", "--optimizer", "sgd")]
    [InlineData("quant option without qlora", "--quant-type", "train", "{q4}", "--data", "{train}", "--method", "lora", "--quant-type", "fp4", "--out", "{out}")]
    [InlineData("unknown quant type", "--quant-type", "train", "{q4}", "--data", "{train}", "--method", "qlora", "--quant-type", "nf5", "--out", "{out}")]
    [InlineData("quantize: unknown type", "--type", "quantize", "{base}", "--out", "{out}", "--type", "int8")]
    [InlineData("quantize: bad block size", "--blocksize", "quantize", "{base}", "--out", "{out}", "--blocksize", "100")]
    [InlineData("quantize: contradictory flags", "--double-quant", "quantize", "{base}", "--out", "{out}", "--double-quant", "--no-double-quant")]
    [InlineData("quantize without --out", "--out", "quantize", "{base}")]
    public void Usage_errors_exit_with_code_2_and_name_the_option(string mistake, string option, params string[] template)
    {
        var output = models.Folder("not-written-" + mistake.Replace(' ', '-').Replace(":", "", StringComparison.Ordinal));
        AssertUsageError(mistake, option, output, [.. template.Select(a => a.Replace("{base}", models.Base).Replace("{q4}", models.Quantized).Replace("{train}", WordMap.TrainPath).Replace("{out}", output))]);
    }

    [Fact]
    public void Full_sft_on_a_4_bit_folder_and_quantizing_it_again_fail_with_code_1()
    {
        var (code, _, error) = Run("train", models.Quantized, "--method", "sft", "--data", WordMap.TrainPath, "--out", models.Folder("sft"), "--max-steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("full fine-tuning cannot train a 4-bit model", error);

        (code, _, error) = Run("quantize", models.Quantized, "--out", models.Folder("q4-again"));
        Assert.Equal(1, code);
        Assert.Contains("already quantized", error);
    }
}
