using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Tokenization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// OPD — <b>Optimal Parameter Decoupling</b>, a method defined by this library; it is <b>not on-policy distillation</b>
/// (also abbreviated OPD), which changes what signal a model learns from, not which parameters train.
/// </summary>
/// <remarks>
/// <para>Life of the strategy: <see cref="Apply"/> freezes the model; <see cref="Prepare"/> (called by the trainer with
/// the task data, or by <see cref="Apply"/> when the context carries task data) computes per-example-gradient Fisher
/// statistics at the base weights on task and general calibration data, marks a core set, selects the trainable set
/// that exactly maximises the surrogate Σ (G − β·H) under the budget (see <see cref="OpdOptions"/>), and wraps each
/// affected Linear so that its weight is W₀ + scatter(δ): only δ trains, the base tensors stay bit-identical. Training
/// adds the anchor (λ/2)·Σ F̃ᴳᵢ·δᵢ² (<see cref="RegularizationLoss"/>); weight decay, if any, acts on δ, i.e. toward
/// the base weights. <see cref="Save"/> writes the <see cref="SparseDelta"/> (tied to the base's hash) and the
/// explanation report (<c>opd_report.json</c> / <c>.md</c>); <see cref="Load"/> refuses another base.
/// <see cref="MergeAndUnload"/> writes θ₀ + δ into the base; <see cref="Remove"/> takes the wrappers out (the base was
/// never written).</para>
/// <para>"Optimal" means the exact optimum of the stated surrogate objective, not of the true loss.</para>
/// </remarks>
public sealed class OpdStrategy : ITaskDataStrategy, IRegularizedStrategy
{
    /// <summary>The method's full name, with the disambiguation.</summary>
    public const string FullName = "Optimal Parameter Decoupling (not on-policy distillation)";

    private readonly Dictionary<string, bool> originalFlags = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, OpdLinear> wrappers = new(StringComparer.Ordinal);
    private List<OpdTarget> targets = [];
    private ILogger logger = NullLogger.Instance;
    private ITextTokenizer? tokenizer;
    private Dictionary<string, string>? baseHashes;
    private JsonObject? report;
    private IReadOnlyList<TokenizedExample> generalSample = [];
    private bool generalCompletionOnly = true;

    /// <summary>Creates the strategy.</summary>
    /// <param name="options">The options; <see cref="OpdOptions.Default"/> when omitted (which needs general data, so pass options).</param>
    /// <exception cref="InvalidOptionException">An option is invalid.</exception>
    public OpdStrategy(OpdOptions? options = null)
        : this(options ?? OpdOptions.Default, validate: true)
    {
    }

    private OpdStrategy(OpdOptions options, bool validate)
    {
        Options = options;
        if (validate)
        {
            Options.Validate();
        }
    }

    /// <summary>The options.</summary>
    public OpdOptions Options { get; }

    /// <inheritdoc />
    public string Method => "opd";

    /// <inheritdoc />
    public CausalLanguageModel? Model { get; private set; }

    /// <inheritdoc />
    public bool IsPrepared { get; private set; }

    /// <inheritdoc />
    public bool SupportsMerge => true;

    /// <summary>The explanation report as it stands (selection; after a save, the training outcome too), or <c>null</c> before selection.</summary>
    public JsonObject? Report => report?.DeepClone().AsObject();

    /// <summary>The number of selectable scalars of the model the strategy is applied to.</summary>
    public long SelectableCount => targets.Sum(t => t.Count);

    /// <inheritdoc />
    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(context);
        if (Model is not null)
        {
            throw new InvalidOperationException("This strategy is already applied to a model; create a new one.");
        }

        var found = OpdTarget.Find(model, Options.IncludeHead);
        if (found.Count == 0)
        {
            throw new InvalidOptionException("method", "the model has no decoder-layer projection OPD could select.");
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            originalFlags[name] = parameter.requires_grad;
            parameter.requires_grad = false;
        }

        targets = found;
        logger = context.Logger;
        tokenizer = context.Tokenizer;
        Model = model;
        if (context.TaskExamples is { } examples && tokenizer is not null)
        {
            var formatter = new ExampleFormatter(tokenizer, ChatTemplates.Resolve(null, tokenizer.Config));
            Prepare(new TaskData(examples, data => formatter.FormatAll(data), LossOnCompletionOnly: true));
        }
    }

    /// <inheritdoc />
    public void Prepare(TaskData data)
    {
        ArgumentNullException.ThrowIfNull(data);
        var model = RequireModel();
        if (IsPrepared)
        {
            throw new InvalidOperationException("OPD has already selected its parameters.");
        }

        if (Options.NeedsGeneralData && Options.GeneralData is null or { Count: 0 })
        {
            throw new InvalidOptionException($"{nameof(OpdOptions)}.{nameof(OpdOptions.GeneralData)}", "OPD needs general calibration data to score parameters and mark the core set.");
        }

        if (model.Device.type == DeviceType.META)
        {
            throw new InvalidOperationException("OPD scores parameters with gradients; the model has no weights (meta device).");
        }

        var taskSample = Sample(data.Examples, data.LossOnCompletionOnly, Options.TaskCalibrationExamples, Options.Seed);
        if (taskSample.Count == 0)
        {
            throw new ArgumentException("No task example has a target token to score parameters on.", nameof(data));
        }

        generalCompletionOnly = data.LossOnCompletionOnly;
        generalSample = Options.GeneralData is { Count: > 0 } general
            ? Sample(data.Format(general), data.LossOnCompletionOnly, Options.GeneralCalibrationExamples, Options.Seed + 1)
            : [];
        var (mean, taskFisher) = OpdScorer.Accumulate(model, targets, taskSample, data.LossOnCompletionOnly);
        Tensor[]? generalFisher = null;
        if (generalSample.Count > 0)
        {
            var (generalMean, fisher) = OpdScorer.Accumulate(model, targets, generalSample, data.LossOnCompletionOnly);
            foreach (var t in generalMean)
            {
                t.Dispose();
            }

            generalFisher = fisher;
        }

        using var scores = OpdScorer.Compute(targets, mean, taskFisher, generalFisher, Options);
        var budget = Options.Budget.Resolve(SelectableCount);
        var (chosen, quantum) = Select(scores, budget);
        try
        {
            var selected = chosen.Sum(c => c.sum().item<long>());
            if (selected == 0)
            {
                throw new InvalidOperationException($"OPD selected nothing: no selectable parameter outside the core set has a positive {Options.ScoreKind} score on the task data.");
            }

            var generalLossBefore = generalSample.Count > 0 ? LanguageModelEvaluator.Evaluate(model, generalSample, generalCompletionOnly).Loss : (double?)null;
            report = BuildReport(scores, chosen, budget, selected, quantum, taskSample, generalLossBefore);
            Wrap(model, scores, chosen);
        }
        finally
        {
            foreach (var c in chosen)
            {
                c.Dispose();
            }
        }

        IsPrepared = true;
        logger.LogInformation("OPD (Optimal Parameter Decoupling) selected {Selected} of {Selectable} selectable parameters (budget {Budget}).", TrainableCount, SelectableCount, budget);
        if (Options.ReportPath is { } path)
        {
            OpdReport.Write(report, path);
        }
    }

    /// <summary>The number of trained scalars (|S|).</summary>
    public long TrainableCount => wrappers.Values.Sum(w => (w.WeightDelta?.numel() ?? 0) + (w.BiasDelta?.numel() ?? 0));

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters()
    {
        RequireModel();
        var result = new List<NamedParameter>();
        foreach (var (slot, wrapper) in wrappers)
        {
            if (wrapper.WeightDelta is { requires_grad: true } w)
            {
                result.Add(new NamedParameter(slot + ".opd_weight_delta", w));
            }

            if (wrapper.BiasDelta is { requires_grad: true } b)
            {
                result.Add(new NamedParameter(slot + ".opd_bias_delta", b));
            }
        }

        return result;
    }

    /// <summary>The anchor (λ/2)·Σᵢ F̃ᴳᵢ·δᵢ² over the trained scalars (F̃ᴳ = general Fisher over its mean; 1 without general data); <c>null</c> when λ is 0.</summary>
    /// <returns>The term.</returns>
    public Tensor? RegularizationLoss()
    {
        if (Options.AnchorStrength == 0 || wrappers.Count == 0)
        {
            return null;
        }

        Tensor? sum = null;
        foreach (var wrapper in wrappers.Values)
        {
            foreach (var (delta, anchor) in new[] { (wrapper.WeightDelta, wrapper.WeightAnchor), (wrapper.BiasDelta, wrapper.BiasAnchor) })
            {
                if (delta is not null && anchor is not null)
                {
                    var term = delta.square().mul(anchor).sum();
                    sum = sum is null ? term : sum + term;
                }
            }
        }

        return sum?.mul(Options.AnchorStrength / 2);
    }

    /// <summary>The learned delta, tied to the base model's hash.</summary>
    /// <returns>The delta.</returns>
    public SparseDelta ToDelta()
    {
        var model = RequireModel();
        RequirePrepared();
        var hashes = BaseHashes(model);
        var tensors = new List<SparseDeltaTensor>();
        foreach (var (slot, wrapper) in wrappers)
        {
            foreach (var (suffix, baseTensor, indices, delta, anchor) in Parts(wrapper))
            {
                tensors.Add(new SparseDeltaTensor(slot + suffix, baseTensor.shape, SafetensorsDType.GetName(baseTensor.dtype), hashes[slot + suffix], Vector<long>(indices), Vector<float>(delta))
                {
                    Anchor = anchor is null ? null : Vector<float>(anchor),
                });
            }
        }

        return new SparseDelta(SparseDelta.HashTensors(hashes), tensors);
    }

    /// <summary>
    /// Writes <c>opd_config.json</c> and <c>opd_delta.safetensors</c> (the <see cref="SparseDelta"/>), and the report
    /// (<c>opd_report.json</c>, <c>opd_report.md</c>, also at <see cref="OpdOptions.ReportPath"/>) updated with the
    /// general-set loss now and each tensor's ‖δ‖.
    /// </summary>
    /// <param name="directory">The folder.</param>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        var delta = ToDelta();
        delta.Write(directory, OptionsJson(Options));
        if (report is not null)
        {
            report["after_training"] = AfterTraining();
            OpdReport.Write(report, Path.Combine(directory, OpdReport.JsonFileName));
            if (Options.ReportPath is { } path)
            {
                OpdReport.Write(report, path);
            }
        }
    }

    /// <summary>
    /// Loads a delta folder written by <see cref="Save"/> into the applied strategy (its selection replaces any made
    /// here). Refuses a model that is not the delta's base.
    /// </summary>
    /// <param name="directory">The folder.</param>
    /// <exception cref="CheckpointFormatException">The folder is malformed or the model is not the delta's base (names the file, tensor and both hashes).</exception>
    public void Load(string directory)
    {
        var model = RequireModel();
        var delta = SparseDelta.Read(directory);
        delta.VerifyBase(BaseHashes(model), Path.Combine(directory, SparseDelta.ConfigFileName));
        Unwrap(merge: false);
        var slots = model.LinearSlots().ToDictionary(s => s.FullName, s => s.Module, StringComparer.Ordinal);
        foreach (var group in delta.Tensors.GroupBy(t => t.Name[..t.Name.LastIndexOf('.')], StringComparer.Ordinal))
        {
            if (!slots.TryGetValue(group.Key, out var module) || module is not Linear linear)
            {
                throw new CheckpointFormatException($"{Path.Combine(directory, SparseDelta.WeightsFileName)}: '{group.Key}' is not a Linear layer of this model.", directory, group.First().Name);
            }

            var weight = group.FirstOrDefault(t => t.Name.EndsWith(".weight", StringComparison.Ordinal));
            var bias = group.FirstOrDefault(t => t.Name.EndsWith(".bias", StringComparison.Ordinal));
            var wrapper = new OpdLinear(linear, Indices(weight, linear.weight!), bias is null || linear.bias is null ? null : Indices(bias, linear.bias));
            using (no_grad())
            {
                Fill(wrapper.WeightDelta, weight?.Values);
                Fill(wrapper.BiasDelta, bias?.Values);
            }

            wrapper.WeightAnchor = Anchor(weight, linear.weight!);
            wrapper.BiasAnchor = bias is null || linear.bias is null ? null : Anchor(bias, linear.bias);
            model.ReplaceModule(group.Key, wrapper);
            wrappers[group.Key] = wrapper;
        }

        report = OpdReport.TryRead(Path.Combine(directory, OpdReport.JsonFileName)) ?? report;
        IsPrepared = true;
    }

    /// <summary>Writes θ₀ + δ into the base weights and takes the wrappers out, leaving a plain model.</summary>
    public void MergeAndUnload()
    {
        RequireModel();
        Unwrap(merge: true);
        Detach();
    }

    /// <summary>Takes the wrappers out and restores the <c>requires_grad</c> flags; the base weights were never written, so they are as before.</summary>
    public void Remove()
    {
        RequireModel();
        Unwrap(merge: false);
        Detach();
    }

    /// <summary>
    /// Applies a saved OPD delta folder to a base model as a new strategy (frozen unless <paramref name="isTrainable"/>).
    /// </summary>
    /// <param name="directory">The folder written by <see cref="Save"/>.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="isTrainable">Leave δ trainable (to continue training).</param>
    /// <param name="logger">Receives warnings.</param>
    /// <returns>The applied strategy.</returns>
    public static OpdStrategy FromPretrained(string directory, CausalLanguageModel model, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var config = SparseDelta.ReadConfig(Path.Combine(directory, SparseDelta.ConfigFileName));
        var strategy = new OpdStrategy(ParseOptions(config["options"] as JsonObject), validate: false);
        AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.Load(directory));
        if (!isTrainable)
        {
            foreach (var p in strategy.wrappers.Values.SelectMany(w => new[] { w.WeightDelta, w.BiasDelta }).OfType<Parameter>())
            {
                p.requires_grad = false;
            }
        }

        return strategy;
    }

    /// <summary>The options as stored under <c>options</c> in <c>opd_config.json</c> (general data is not stored).</summary>
    internal static JsonObject OptionsJson(OpdOptions o) => new()
    {
        ["budget"] = o.Budget.ToString(),
        ["granularity"] = o.Granularity.ToString().ToLowerInvariant(),
        ["row_quotas"] = o.RowQuotas,
        ["core_fraction"] = o.CoreFraction,
        ["beta"] = o.Beta,
        ["anchor_strength"] = o.AnchorStrength,
        ["score_kind"] = o.ScoreKind.ToString().ToLowerInvariant(),
        ["task_calibration_examples"] = o.TaskCalibrationExamples,
        ["general_calibration_examples"] = o.GeneralCalibrationExamples,
        ["include_head"] = o.IncludeHead,
        ["seed"] = o.Seed,
    };

    private static OpdOptions ParseOptions(JsonObject? json)
    {
        var d = OpdOptions.Default;
        if (json is null)
        {
            return d;
        }

        T Get<T>(string key, T fallback) => json[key] is JsonValue v && v.TryGetValue<T>(out var value) ? value : fallback;
        return d with
        {
            Budget = json["budget"] is JsonValue b && b.TryGetValue<string>(out var text) ? OpdBudget.Parse(text) : d.Budget,
            Granularity = Enum.TryParse<OpdGranularity>(Get("granularity", ""), true, out var g) ? g : d.Granularity,
            RowQuotas = Get("row_quotas", d.RowQuotas),
            CoreFraction = Get("core_fraction", d.CoreFraction),
            Beta = Get("beta", d.Beta),
            AnchorStrength = Get("anchor_strength", d.AnchorStrength),
            ScoreKind = Enum.TryParse<OpdScoreKind>(Get("score_kind", ""), true, out var k) ? k : d.ScoreKind,
            TaskCalibrationExamples = Get("task_calibration_examples", d.TaskCalibrationExamples),
            GeneralCalibrationExamples = Get("general_calibration_examples", d.GeneralCalibrationExamples),
            IncludeHead = Get("include_head", d.IncludeHead),
            Seed = Get("seed", d.Seed),
        };
    }

    /// <summary>The selection: per target a Bool mask, and the knapsack quantum (0 in element mode).</summary>
    private (Tensor[] Chosen, long Quantum) Select(OpdScores scores, long budget)
    {
        if (Options.Granularity == OpdGranularity.Element)
        {
            // One group per Linear: [out, in] weight scores with the bias entry as an extra column, so a row quota
            // covers an output neuron's weights and its bias.
            var chosen = new Tensor[targets.Count];
            var groups = new List<Tensor>();
            var members = new List<(int Weight, int? Bias)>();
            using (var scope = NewDisposeScope())
            {
                for (var i = 0; i < targets.Count; i++)
                {
                    if (targets[i].IsBias)
                    {
                        continue;
                    }

                    var bias = i + 1 < targets.Count && targets[i + 1].IsBias && targets[i + 1].Slot == targets[i].Slot ? i + 1 : (int?)null;
                    var g = scores.Eligible(i);
                    groups.Add(bias is { } bi ? cat([g, scores.Eligible(bi).unsqueeze(1)], 1) : g);
                    members.Add((i, bias));
                }

                var masks = OpdSelector.Elements(groups, budget, Options.RowQuotas);
                for (var k = 0; k < members.Count; k++)
                {
                    var (w, b) = members[k];
                    var columns = targets[w].Parameter.shape[1];
                    chosen[w] = masks[k].narrow(1, 0, columns).contiguous().MoveToOuterDisposeScope();
                    if (b is { } bi)
                    {
                        chosen[bi] = masks[k].narrow(1, columns, 1).squeeze(1).contiguous().MoveToOuterDisposeScope();
                    }
                }
            }

            return (chosen, 0);
        }

        // Units: tensors, or decoder layers (the head is its own unit); a unit trains all its non-core entries.
        var units = Options.Granularity == OpdGranularity.Tensor
            ? Enumerable.Range(0, targets.Count).Select(i => new[] { i }).ToList()
            : Enumerable.Range(0, targets.Count).GroupBy(i => targets[i].Layer ?? -1).Select(g => g.ToArray()).ToList();
        var values = new double[units.Count];
        var costs = new long[units.Count];
        for (var u = 0; u < units.Count; u++)
        {
            foreach (var i in units[u])
            {
                using var scope = NewDisposeScope();
                var free = scores.Core[i].logical_not();
                values[u] += scores.Score[i].masked_select(free).to(ScalarType.Float64).sum().item<double>();
                costs[u] += free.sum().item<long>();
            }
        }

        var (picked, quantum) = OpdSelector.Knapsack(values, costs, budget);
        var masksOut = new Tensor[targets.Count];
        for (var u = 0; u < units.Count; u++)
        {
            foreach (var i in units[u])
            {
                masksOut[i] = picked[u] ? scores.Core[i].logical_not() : zeros_like(scores.Core[i]);
            }
        }

        return (masksOut, quantum);
    }

    /// <summary>Wraps every Linear with a selected entry; δ starts at 0, so the model computes exactly as before.</summary>
    private void Wrap(CausalLanguageModel model, OpdScores scores, Tensor[] chosen)
    {
        // F̃ᴳ = Fᴳ / mean(Fᴳ) over all selectable entries (1 everywhere without general data: L2-SP).
        double meanGeneral = 0;
        if (scores.GeneralFisher is { } fG)
        {
            meanGeneral = fG.Sum(f => f.to(ScalarType.Float64).sum().item<double>()) / SelectableCount;
        }

        Tensor? IndicesOf(int? i) => i is { } k && chosen[k].any().item<bool>() ? chosen[k].flatten().nonzero().squeeze(1).contiguous() : null;
        Tensor? AnchorOf(int? i, Tensor? indices)
        {
            if (i is not { } k || indices is null)
            {
                return null;
            }

            return scores.GeneralFisher is { } f && meanGeneral > 0
                ? f[k].flatten().index_select(0, indices).div(meanGeneral).to(ScalarType.Float32)
                : ones(indices.shape[0], ScalarType.Float32, indices.device);
        }

        foreach (var slot in targets.Select(t => t.Slot).Distinct())
        {
            var w = targets.FindIndex(t => t.Slot == slot && !t.IsBias);
            var b = targets.FindIndex(t => t.Slot == slot && t.IsBias);
            var wi = IndicesOf(w);
            var bi = IndicesOf(b >= 0 ? b : null);
            if (wi is null && bi is null)
            {
                continue;
            }

            var linear = (Linear)model.LinearSlots().First(s => s.FullName == slot).Module;
            var wrapper = new OpdLinear(linear, wi, bi) { WeightAnchor = AnchorOf(w, wi), BiasAnchor = AnchorOf(b >= 0 ? b : null, bi) };
            model.ReplaceModule(slot, wrapper);
            wrappers[slot] = wrapper;
        }
    }

    private void Unwrap(bool merge)
    {
        var model = RequireModel();
        foreach (var (slot, wrapper) in wrappers)
        {
            if (merge)
            {
                using var _ = no_grad();
                using var scope = NewDisposeScope();
                foreach (var (_, baseTensor, indices, delta, _) in Parts(wrapper))
                {
                    baseTensor.copy_(OpdLinear.Effective(baseTensor, indices, delta));
                }
            }

            model.ReplaceModule(slot, wrapper.BaseLayer);
            wrapper.DisposeDeltas();
        }

        wrappers.Clear();
        IsPrepared = false;
    }

    private void Detach()
    {
        foreach (var (name, parameter) in RequireModel().named_parameters())
        {
            if (originalFlags.TryGetValue(name, out var flag))
            {
                parameter.requires_grad = flag;
            }
        }

        originalFlags.Clear();
        Model = null;
    }

    private static IEnumerable<(string Suffix, Tensor Base, Tensor Indices, Tensor Delta, Tensor? Anchor)> Parts(OpdLinear wrapper)
    {
        if (wrapper.WeightIndices is { } wi && wrapper.WeightDelta is { } wd)
        {
            yield return (".weight", wrapper.BaseLayer.weight!, wi, wd, wrapper.WeightAnchor);
        }

        if (wrapper.BiasIndices is { } bi && wrapper.BiasDelta is { } bd)
        {
            yield return (".bias", wrapper.BaseLayer.bias!, bi, bd, wrapper.BiasAnchor);
        }
    }

    private JsonObject AfterTraining()
    {
        var model = RequireModel();
        var result = new JsonObject();
        if (generalSample.Count > 0)
        {
            var after = LanguageModelEvaluator.Evaluate(model, generalSample, generalCompletionOnly).Loss;
            result["general_loss"] = OpdReport.Value(after);
            if (report?["general_loss_before"] is JsonValue v && v.TryGetValue<double>(out var before))
            {
                result["general_loss_change"] = OpdReport.Value(after - before);
            }
        }

        var tensors = new JsonArray();
        using (no_grad())
        {
            foreach (var (slot, wrapper) in wrappers)
            {
                foreach (var (suffix, baseTensor, _, delta, _) in Parts(wrapper))
                {
                    using var scope = NewDisposeScope();
                    var norm = delta.to(ScalarType.Float64).norm().item<double>();
                    var baseNorm = baseTensor.to(ScalarType.Float64).norm().item<double>();
                    tensors.Add(new JsonObject
                    {
                        ["name"] = slot + suffix,
                        ["delta_norm"] = OpdReport.Value(norm),
                        ["relative_change"] = OpdReport.Value(baseNorm > 0 ? norm / baseNorm : 0),
                    });
                }
            }
        }

        result["tensors"] = tensors;
        return result;
    }

    private JsonObject BuildReport(OpdScores scores, Tensor[] chosen, long budget, long selected, long quantum, IReadOnlyList<TokenizedExample> taskSample, double? generalLossBefore)
    {
        var model = RequireModel();
        using var scope = NewDisposeScope();
        double Sum(Tensor t, Tensor? mask = null) => (mask is null ? t : t.masked_select(mask)).to(ScalarType.Float64).sum().item<double>();
        var rows = new List<(JsonObject Row, double Score)>();
        double gainSelected = 0, damageSelected = 0, scoreSelected = 0, gainFree = 0, damageFree = 0, scoreFree = 0;
        long freeCount = 0, nonPositive = 0, coreCount = 0;
        for (var i = 0; i < targets.Count; i++)
        {
            var t = targets[i];
            var core = scores.Core[i];
            var free = core.logical_not();
            var count = t.Count;
            var cores = core.sum().item<long>();
            var picked = chosen[i].sum().item<long>();
            var positive = scores.Score[i].gt(0).logical_and(free).sum().item<long>();
            var scoreFreeHere = Sum(scores.Score[i], free);
            gainSelected += Sum(scores.Gain[i], chosen[i]);
            damageSelected += Sum(scores.Damage[i], chosen[i]);
            scoreSelected += Sum(scores.Score[i], chosen[i]);
            gainFree += Sum(scores.Gain[i], free);
            damageFree += Sum(scores.Damage[i], free);
            scoreFree += scoreFreeHere;
            freeCount += count - cores;
            nonPositive += count - cores - positive;
            coreCount += cores;
            var decision = picked > 0 ? "selected"
                : cores == count ? "core-protected"
                : positive == 0 ? "non-positive-score"
                : "below-cutoff";
            rows.Add((new JsonObject
            {
                ["name"] = t.Name,
                ["layer"] = t.Layer is { } l ? l : "head",
                ["module"] = t.Module,
                ["params"] = count,
                ["task_fisher"] = OpdReport.Value(Sum(scores.TaskFisher[i])),
                ["general_fisher"] = scores.GeneralFisher is { } fG ? OpdReport.Value(Sum(fG[i])) : null,
                ["gain"] = OpdReport.Value(Sum(scores.Gain[i])),
                ["damage"] = OpdReport.Value(Sum(scores.Damage[i])),
                ["score"] = OpdReport.Value(scoreFreeHere),
                ["epsilon_task"] = OpdReport.Value(scores.EpsilonTask[i]),
                ["epsilon_general"] = OpdReport.Value(scores.EpsilonGeneral[i]),
                ["core"] = cores,
                ["positive_score"] = positive,
                ["selected"] = picked,
                ["selected_fraction"] = OpdReport.Value((double)picked / count),
                ["core_fraction"] = OpdReport.Value((double)cores / count),
                ["decision"] = decision,
            }, scoreFreeHere));
        }

        var ranked = rows.Select((r, i) => (r.Row, r.Score, i)).OrderByDescending(r => r.Score).ThenBy(r => r.i).ToList();
        for (var k = 0; k < ranked.Count; k++)
        {
            ranked[k].Row["rank"] = k + 1;
        }

        var total = model.CountParameters().Total;
        var randomShare = freeCount > 0 ? (double)selected / freeCount : 0;
        var selectable = new HashSet<string>(targets.Select(t => t.Name), StringComparer.Ordinal);
        var excluded = new JsonArray();
        foreach (var (name, _) in model.named_parameters())
        {
            if (!selectable.Contains(name))
            {
                excluded.Add(new JsonObject
                {
                    ["name"] = name,
                    ["reason"] = name.Contains("embed_tokens", StringComparison.Ordinal) ? "embeddings are never selected (they carry general knowledge)"
                        : name.StartsWith("lm_head", StringComparison.Ordinal) ? "the head is selected only with IncludeHead (and only when untied)"
                        : "only the weights and biases of the decoder layers' projections are selectable",
                });
            }
        }

        return new JsonObject
        {
            ["method"] = "opd",
            ["method_name"] = FullName,
            ["note"] = "OPD selects the set that exactly maximises the surrogate Σ S (S = G − β·H for the decoupled score) under the budget; \"optimal\" refers to that stated surrogate, not to the true loss. Not on-policy distillation.",
            ["base_model_hash"] = SparseDelta.HashTensors(BaseHashes(model)),
            ["score_kind"] = Options.ScoreKind.ToString().ToLowerInvariant(),
            ["granularity"] = Options.Granularity.ToString().ToLowerInvariant(),
            ["row_quotas"] = Options.Granularity == OpdGranularity.Element && Options.RowQuotas,
            ["core_fraction"] = Options.CoreFraction,
            ["beta"] = Options.Beta,
            ["anchor_strength"] = Options.AnchorStrength,
            ["seed"] = Options.Seed,
            ["epsilon"] = "per tensor: eps_T = 1e-3 * mean(F_T), eps_G = 1e-1 * mean(F_G) (1 where the mean is 0)",
            ["calibration"] = new JsonObject
            {
                ["task_examples"] = taskSample.Count,
                ["task_data_hash"] = HashExamples(taskSample),
                ["general_examples"] = generalSample.Count,
                ["general_data_hash"] = generalSample.Count > 0 ? HashExamples(generalSample) : null,
                ["loss_on_completion_only"] = generalCompletionOnly,
            },
            ["budget"] = new JsonObject
            {
                ["requested"] = Options.Budget.ToString(),
                ["resolved"] = budget,
                ["used"] = selected,
                ["slack"] = budget - selected,
                ["selectable"] = SelectableCount,
                ["total_parameters"] = total,
                ["used_percent_of_selectable"] = OpdReport.Value(100.0 * selected / SelectableCount),
                ["used_percent_of_total"] = OpdReport.Value(100.0 * selected / total),
                ["core"] = coreCount,
                ["non_positive_outside_core"] = nonPositive,
                ["knapsack_quantum"] = Options.Granularity == OpdGranularity.Element ? null : quantum,
            },
            ["predicted"] = new JsonObject
            {
                ["gain"] = OpdReport.Value(gainSelected),
                ["damage"] = OpdReport.Value(damageSelected),
                ["score"] = OpdReport.Value(scoreSelected),
                ["random_expected_gain"] = OpdReport.Value(gainFree * randomShare),
                ["random_expected_damage"] = OpdReport.Value(damageFree * randomShare),
                ["random_expected_score"] = OpdReport.Value(scoreFree * randomShare),
            },
            ["general_loss_before"] = generalLossBefore is { } g ? OpdReport.Value(g) : null,
            ["tensors"] = new JsonArray(rows.Select(r => (JsonNode)r.Row).ToArray()),
            ["excluded_by_policy"] = excluded,
        };
    }

    private Dictionary<string, string> BaseHashes(CausalLanguageModel model) => baseHashes ??= SparseDelta.BaseTensorHashes(model);

    /// <summary>A seeded sample of up to <paramref name="count"/> examples that have a target token.</summary>
    private static List<TokenizedExample> Sample(IReadOnlyList<TokenizedExample> examples, bool completionOnly, int count, long seed)
    {
        var usable = examples.Where(e => e is not null && e.HasTargets(completionOnly)).ToList();
        var random = new Random(unchecked((int)(seed ^ (seed >> 32))));
        for (var i = usable.Count - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (usable[i], usable[j]) = (usable[j], usable[i]);
        }

        return usable.Take(count).ToList();
    }

    private static string HashExamples(IReadOnlyList<TokenizedExample> examples)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var e in examples)
        {
            sha.AppendData(System.Text.Encoding.UTF8.GetBytes(string.Join(",", e.InputIds) + "|" + string.Concat(e.TrainableMask.Select(m => m ? '1' : '0')) + "\n"));
        }

        return "sha256:" + Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    private static T[] Vector<T>(Tensor t)
        where T : unmanaged
    {
        using var cpu = t.detach().cpu().contiguous();
        return cpu.data<T>().ToArray();
    }

    private static Tensor? Indices(SparseDeltaTensor? part, Tensor baseTensor) =>
        part is null ? null : tensor(part.Indices.ToArray(), ScalarType.Int64, baseTensor.device);

    private static Tensor? Anchor(SparseDeltaTensor? part, Tensor baseTensor) => part is null ? null
        : part.Anchor is { } anchor ? tensor(anchor.ToArray(), ScalarType.Float32, baseTensor.device)
        : ones(part.Indices.Count, ScalarType.Float32, baseTensor.device);

    private static void Fill(Parameter? delta, IReadOnlyList<float>? values)
    {
        if (delta is not null && values is not null)
        {
            using var source = tensor(values.ToArray(), ScalarType.Float32);
            delta.copy_(source);
        }
    }

    private void RequirePrepared()
    {
        if (!IsPrepared)
        {
            throw new InvalidOperationException("OPD has not selected its parameters yet: train (the trainer prepares it with the task data) or Load a saved delta.");
        }
    }

    private CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");
}
