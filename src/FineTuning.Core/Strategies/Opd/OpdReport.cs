using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using FineTuning.Core.IO;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// OPD's explanation report: built as a JSON object in a fixed key order (so the same seed and data give a
/// byte-identical file), written as <c>opd_report.json</c> and rendered as <c>opd_report.md</c>.
/// </summary>
internal static class OpdReport
{
    public const string JsonFileName = "opd_report.json";

    public const string MarkdownFileName = "opd_report.md";

    /// <summary>Indented JSON with non-ASCII characters kept readable.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes the JSON and the Markdown next to each other: <paramref name="jsonPath"/> and the same path with <c>.md</c>.</summary>
    public static void Write(JsonObject report, string jsonPath)
    {
        var folder = Path.GetDirectoryName(Path.GetFullPath(jsonPath))!;
        Directory.CreateDirectory(folder);
        AtomicFile.WriteAllText(jsonPath, report.ToJsonString(JsonOptions) + "\n");
        AtomicFile.WriteAllText(Path.ChangeExtension(jsonPath, ".md"), Markdown(report));
    }

    /// <summary>Reads a report written by <see cref="Write"/>, or <c>null</c> when the file is absent or unreadable.</summary>
    public static JsonObject? TryRead(string path)
    {
        try
        {
            return File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The Markdown rendering: run header, budget, predictions, forgetting, top units, per-layer heat map, per-tensor table.</summary>
    public static string Markdown(JsonObject report)
    {
        var md = new StringBuilder();
        md.Append("# OPD report — Optimal Parameter Decoupling (not on-policy distillation)\n\n");
        md.Append(Str(report["note"])).Append("\n\n");
        md.Append("## Run\n\n| setting | value |\n|---|---|\n");
        foreach (var key in new[] { "base_model_hash", "score_kind", "granularity", "row_quotas", "core_fraction", "beta", "anchor_strength", "seed", "epsilon" })
        {
            md.Append("| ").Append(key).Append(" | ").Append(Str(report[key])).Append(" |\n");
        }

        if (report["calibration"] is JsonObject calibration)
        {
            foreach (var (key, value) in calibration)
            {
                md.Append("| calibration.").Append(key).Append(" | ").Append(Str(value)).Append(" |\n");
            }
        }

        md.Append("\n## Budget\n\n| | value |\n|---|---|\n");
        foreach (var (key, value) in report["budget"]?.AsObject() ?? [])
        {
            md.Append("| ").Append(key).Append(" | ").Append(Str(value)).Append(" |\n");
        }

        md.Append("\n## Predicted effect of the selection (surrogate)\n\n| | selected | random selection of equal size (expected) |\n|---|---|---|\n");
        if (report["predicted"] is JsonObject predicted)
        {
            md.Append("| task gain ΣG | ").Append(Str(predicted["gain"])).Append(" | ").Append(Str(predicted["random_expected_gain"])).Append(" |\n");
            md.Append("| general damage ΣH | ").Append(Str(predicted["damage"])).Append(" | ").Append(Str(predicted["random_expected_damage"])).Append(" |\n");
            md.Append("| score ΣS | ").Append(Str(predicted["score"])).Append(" | ").Append(Str(predicted["random_expected_score"])).Append(" |\n");
        }

        md.Append("\n## General-set loss (forgetting)\n\n| before | after | change |\n|---|---|---|\n");
        var after = report["after_training"] as JsonObject;
        md.Append("| ").Append(Str(report["general_loss_before"])).Append(" | ").Append(Str(after?["general_loss"])).Append(" | ").Append(Str(after?["general_loss_change"])).Append(" |\n");

        var tensors = report["tensors"]?.AsArray().OfType<JsonObject>().ToList() ?? [];
        md.Append("\n## Top units by score ΣS\n\n| rank | tensor | ΣS | decision | selected |\n|---|---|---|---|---|\n");
        foreach (var t in tensors.Where(t => t["rank"] is not null).OrderBy(t => (int)t["rank"]!).Take(20))
        {
            md.Append("| ").Append(Str(t["rank"])).Append(" | ").Append(Str(t["name"])).Append(" | ").Append(Str(t["score"])).Append(" | ").Append(Str(t["decision"])).Append(" | ").Append(Str(t["selected"])).Append(" |\n");
        }

        var modules = tensors.Select(t => Str(t["module"])).Distinct().ToList();
        md.Append("\n## Selected fraction per layer and module\n\n| layer | ").Append(string.Join(" | ", modules)).Append(" |\n|---|").Append(string.Concat(modules.Select(_ => "---|"))).Append('\n');
        foreach (var layer in tensors.GroupBy(t => Str(t["layer"])))
        {
            md.Append("| ").Append(layer.Key).Append(" | ");
            md.Append(string.Join(" | ", modules.Select(m =>
            {
                var ts = layer.Where(t => Str(t["module"]) == m).ToList();
                var count = ts.Sum(t => (long)t["params"]!);
                return count == 0 ? "" : Number(ts.Sum(t => (long)t["selected"]!) / (double)count);
            })));
            md.Append(" |\n");
        }

        md.Append("\n## Tensors\n\n| tensor | params | ΣFᵀ | ΣFᴳ | ΣG | ΣH | ΣS | core | selected | decision | ‖δ‖₂ | ‖δ‖/‖θ₀‖ |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        var norms = after?["tensors"]?.AsArray().OfType<JsonObject>().ToDictionary(t => Str(t["name"]), t => t) ?? [];
        foreach (var t in tensors)
        {
            var norm = norms.GetValueOrDefault(Str(t["name"]));
            md.Append("| ").Append(string.Join(" | ", new[] { t["name"], t["params"], t["task_fisher"], t["general_fisher"], t["gain"], t["damage"], t["score"], t["core"], t["selected"], t["decision"], norm?["delta_norm"], norm?["relative_change"] }.Select(Str))).Append(" |\n");
        }

        if (report["excluded_by_policy"] is JsonArray excluded && excluded.Count > 0)
        {
            md.Append("\n## Excluded by policy\n\n");
            foreach (var e in excluded.OfType<JsonObject>())
            {
                md.Append("- ").Append(Str(e["name"])).Append(" — ").Append(Str(e["reason"])).Append('\n');
            }
        }

        return md.ToString();
    }

    /// <summary>A double for the report: finite values as shortest round-trip text, others as strings.</summary>
    public static JsonNode Value(double value) => double.IsFinite(value) ? JsonValue.Create(value) : JsonValue.Create(value.ToString(CultureInfo.InvariantCulture));

    private static string Number(double value) => value.ToString("0.####", CultureInfo.InvariantCulture);

    private static string Str(JsonNode? node) => node switch
    {
        null => "—",
        JsonValue v when v.TryGetValue<long>(out var l) => l.ToString(CultureInfo.InvariantCulture),
        JsonValue v when v.TryGetValue<int>(out var i) => i.ToString(CultureInfo.InvariantCulture),
        JsonValue v when v.TryGetValue<double>(out var d) => d == Math.Floor(d) && Math.Abs(d) < 1e15 ? d.ToString("0", CultureInfo.InvariantCulture) : d.ToString("G6", CultureInfo.InvariantCulture),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => node.ToJsonString(),
    };
}
