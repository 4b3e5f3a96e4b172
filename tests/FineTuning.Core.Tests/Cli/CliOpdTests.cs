using System.Text.Json;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Tests.Samples;
using Xunit;
using static FineTuning.Core.Tests.Cli.CliRunner;

namespace FineTuning.Core.Tests.Cli;

/// <summary>A random tiny base and an OPD delta trained on the word map by <c>finetune train --method opd</c>.</summary>
public sealed class CliOpd : CliFixture
{
    public CliOpd()
    {
        Delta = Folder("opd");
        ReportPath = Folder("reports/opd.json");
        TrainOutput = Succeed("train", Base, "--method", "opd", "--general-data", WordMap.PretrainPath, "--budget", "0.05", "--calibration", "8",
            "--report", ReportPath, "--data", WordMap.TrainPath, "--out", Delta, "--max-steps", "3", "--batch-size", "8", "--lr", "1e-2");
    }

    public string Delta { get; }

    public string ReportPath { get; }

    public string TrainOutput { get; }
}

/// <summary><c>--method opd</c> (Optimal Parameter Decoupling) on <c>inspect</c>, <c>train</c>, <c>eval --adapter</c> and <c>generate --adapter</c>.</summary>
public sealed class CliOpdTests(CliOpd fixture) : IClassFixture<CliOpd>
{
    // The tiny preset: embeddings 50257·64 = 3,216,448 (tied head), per layer q 64·64, k and v 32·64, o 64·64,
    // gate, up, down 176·64 (46,080 selectable) and two norms of 64; two layers and a final norm: 3,308,928 in all.
    // 5 % of the 92,160 selectable = 4,608 trained scalars, which are parameters too (as PEFT counts adapters).
    private const string PeftLine = "trainable params: 4,608 || all params: 3,313,536 || trainable%: 0.1391";

    [Fact]
    public void Train_writes_the_delta_the_report_and_prints_the_selected_count()
    {
        Assert.Contains(PeftLine, Lines(fixture.TrainOutput));
        foreach (var file in new[] { SparseDelta.ConfigFileName, SparseDelta.WeightsFileName, "opd_report.json", "opd_report.md" })
        {
            Assert.True(File.Exists(Path.Combine(fixture.Delta, file)), file);
        }

        Assert.True(File.Exists(fixture.ReportPath));
        Assert.True(File.Exists(Path.ChangeExtension(fixture.ReportPath, ".md")));
        using var report = JsonDocument.Parse(File.ReadAllText(fixture.ReportPath));
        Assert.Equal(4608, report.RootElement.GetProperty("budget").GetProperty("used").GetInt64());
        Assert.True(report.RootElement.GetProperty("after_training").GetProperty("general_loss").GetDouble() > 0);
        Assert.Equal(8, report.RootElement.GetProperty("calibration").GetProperty("general_examples").GetInt32());
    }

    [Fact]
    public void Inspect_scores_and_selects_on_the_data_and_prints_PEFTs_line()
    {
        var output = Succeed("inspect", fixture.Base, "--method", "opd", "--general-data", WordMap.PretrainPath, "--budget", "0.05", "--calibration", "4", "--data", WordMap.TrainPath);
        Assert.Equal(PeftLine, LastLine(output));
        Assert.Contains("method: opd", Lines(output));
    }

    [Fact]
    public void Eval_generate_and_merge_load_the_delta_folder()
    {
        var withDelta = Succeed("eval", fixture.Base, "--data", WordMap.EvalPath, "--completion-only", "--json", "--adapter", fixture.Delta);
        var without = Succeed("eval", fixture.Base, "--data", WordMap.EvalPath, "--completion-only", "--json");
        double Loss(string text) => JsonDocument.Parse(LastLine(text)).RootElement.GetProperty("loss").GetDouble();
        Assert.NotEqual(Loss(without), Loss(withDelta));
        Succeed("generate", fixture.Base, "--prompt", "map red blue green =", "--max-new-tokens", "3", "--adapter", fixture.Delta);

        // merge writes θ₀ + δ exactly as the wrapped forward computes it.
        var merged = fixture.Folder("merged");
        Succeed("merge", fixture.Base, "--adapter", fixture.Delta, "--out", merged);
        Assert.Equal(Loss(withDelta), Loss(Succeed("eval", merged, "--data", WordMap.EvalPath, "--completion-only", "--json")));
    }

    [Fact]
    public void Opd_usage_errors_name_the_option()
    {
        var output = fixture.Folder("never");
        string[] train = ["train", fixture.Base, "--data", WordMap.TrainPath, "--out", output];
        AssertUsageError("bad budget", "--budget", output, [.. train, "--method", "opd", "--general-data", WordMap.PretrainPath, "--budget", "lots"]);
        AssertUsageError("bad granularity", "--granularity", output, [.. train, "--method", "opd", "--general-data", WordMap.PretrainPath, "--granularity", "row"]);
        AssertUsageError("no general data", "--general-data", output, [.. train, "--method", "opd"]);
        AssertUsageError("opd option on lora", "--budget", output, [.. train, "--method", "lora", "--budget", "0.1"]);
        AssertUsageError("inspect without data", "--data", output, ["inspect", fixture.Base, "--method", "opd", "--general-data", WordMap.PretrainPath]);
    }
}
