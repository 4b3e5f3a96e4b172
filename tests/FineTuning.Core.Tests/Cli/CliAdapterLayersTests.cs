using System.Globalization;
using System.Text.Json;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies.AdapterLayers;
using FineTuning.Core.Tests.Models;
using FineTuning.Core.Tests.Samples;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;

namespace FineTuning.Core.Tests.Cli;

/// <summary>A random tiny base and Houlsby bottleneck adapters trained on it by <c>finetune train --method adapters</c>.</summary>
public sealed class CliBottleneckAdapters : CliFixture
{
    public CliBottleneckAdapters()
    {
        Adapter = Folder("houlsby");
        TrainOutput = Succeed("train", Base, "--method", "adapters", "--placement", "houlsby", "--reduction-factor", "8", "--non-linearity", "gelu",
            "--data", WordMap.TrainPath, "--out", Adapter, "--max-steps", "3", "--batch-size", "8", "--lr", "2e-2", "--schedule", "constant");
    }

    /// <summary>Houlsby placement, d = 64 / 8 = 8, gelu.</summary>
    public string Adapter { get; }

    /// <summary>What <c>train</c> printed.</summary>
    public string TrainOutput { get; }
}

public sealed class CliAdapterLayersTests(CliBottleneckAdapters fixture) : IClassFixture<CliBottleneckAdapters>
{
    private static string Count(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    // Llama-2-7B (6,738,415,616 parameters), rf 16 → d 256: 2,101,504 per adapter (see AdapterLayersTests).
    [Theory]
    [InlineData("adapters", 32L * 2_101_504, "0.9881")]
    [InlineData("adapters --placement houlsby", 64L * 2_101_504, "1.9569")]
    [InlineData("adapters --reduction-factor 64", 32L * ((2 * 4096 * 64) + 64 + 4096), "0.2503")]
    public void Inspect_prints_PEFTs_line_for_a_published_config(string method, long trainable, string percent)
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp.File("config.json"), PublishedConfigs.Llama2_7B);
        var output = Succeed(["inspect", temp.Path, "--method", .. method.Split(' ')]);
        Assert.Contains("method: adapters", output);
        Assert.Equal($"trainable params: {Count(trainable)} || all params: {Count(6_738_415_616L + trainable)} || trainable%: {percent}", LastLine(output));
    }

    [Fact]
    public void Train_prints_the_parameter_line_and_writes_an_AdapterHub_folder()
    {
        // Tiny preset (hidden 64, 2 layers): d = 8, per adapter 64·8 + 8 + 8·64 + 64 = 1,096; Houlsby → 4 adapters.
        long total = (50257L * 64) + (2 * ((2 * 64 * 64) + (2 * 64 * 32) + (3 * 64 * 176) + (2 * 64))) + 64 + (4 * 1096);
        var lines = Lines(fixture.TrainOutput);
        Assert.Equal($"trainable params: 4,384 || all params: {Count(total)} || trainable%: {100.0 * 4384 / total:F4}", lines[0]);
        Assert.Equal($"saved: {fixture.Adapter}", lines[^1]);

        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(fixture.Adapter, AdapterHubFiles.ConfigFileName)));
        var bn = config.RootElement.GetProperty("config");
        Assert.True(bn.GetProperty("mh_adapter").GetBoolean());
        Assert.True(bn.GetProperty("output_adapter").GetBoolean());
        Assert.Equal(8, bn.GetProperty("reduction_factor").GetInt32());
        Assert.Equal("gelu", bn.GetProperty("non_linearity").GetString());
        Assert.Equal("default", config.RootElement.GetProperty("name").GetString());
        using var weights = new SafetensorsReader(Path.Combine(fixture.Adapter, AdapterHubFiles.WeightsFileName));
        Assert.Equal(16, weights.TensorNames.Count);
        Assert.Contains("model.layers.1.attention_adapters.adapters.default.adapter_down.0.weight", weights.TensorNames);
        Assert.Equal(4384, weights.Tensors.Values.Sum(t => t.Shape.Aggregate(1L, (a, b) => a * b)));
    }

    [Fact]
    public void Eval_and_generate_take_the_adapter_and_merge_refuses_it()
    {
        static double Loss(params string[] args)
        {
            using var json = JsonDocument.Parse(LastLine(Succeed(["eval", .. args, "--data", WordMap.EvalPath, "--completion-only", "--json"])));
            return json.RootElement.GetProperty("loss").GetDouble();
        }

        var plain = Loss(fixture.Base);
        var adapted = Loss(fixture.Base, "--adapter", fixture.Adapter);
        Assert.True(Math.Abs(adapted - plain) > 1e-2, $"the adapter changed the loss by only {adapted - plain}");
        Assert.Equal(adapted, Loss(fixture.Base, "--adapter", fixture.Adapter)); // deterministic: dropout is off when evaluating

        var generated = Succeed("generate", fixture.Base, "--prompt", "map red blue green =", "--max-new-tokens", "3", "--adapter", fixture.Adapter);
        Assert.StartsWith("map red blue green =", generated);

        var merged = fixture.Folder("merged");
        AssertUsageError("merging bottleneck adapters", "adapters adapter cannot be merged", merged, "merge", fixture.Base, "--adapter", fixture.Adapter, "--out", merged);
    }

    [Theory]
    [InlineData("--placement", "sideways", "--placement")]
    [InlineData("--non-linearity", "softmax", "--non-linearity")]
    public void Bad_adapter_options_are_usage_errors(string option, string value, string named)
    {
        using var temp = new TempDirectory();
        var output = temp.File("out");
        AssertUsageError($"{option} {value}", named, output, "train", fixture.Base, "--method", "adapters", option, value, "--data", WordMap.TrainPath, "--out", output);
    }
}
