using FineTuning.Core.IO;
using FineTuning.Core.Models;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>
/// Bottleneck adapters (Houlsby et al. 2019, Pfeiffer et al. 2020) with AdapterHub's semantics: a small
/// down-project → activation → up-project module with a residual connection is inserted at the sublayer-output seam
/// of every decoder layer (<see cref="DecoderLayer.MlpOutputAdapter"/>, and <see cref="DecoderLayer.AttentionOutputAdapter"/>
/// for the Houlsby placement); the base is frozen. Saves to and loads from AdapterHub adapter folders.
/// </summary>
/// <remarks>
/// <para>Parameter names are <c>model.layers.{i}.mlp_adapter.adapters.{name}.adapter_down.0.weight</c> (and
/// <c>attention_adapter</c>); saved keys use AdapterHub's <c>output_adapters</c> / <c>attention_adapters</c>.</para>
/// <para>The adapters are non-linear, so nothing can be merged into the base weights (<see cref="SupportsMerge"/> is
/// false); <see cref="Remove"/> takes them out and restores the <c>requires_grad</c> flags — the base weights are never
/// written, so they stay bit for bit what they were.</para>
/// </remarks>
public sealed class AdapterLayersStrategy : IParameterStrategy
{
    private readonly Dictionary<string, bool> originalFlags = new(StringComparer.Ordinal);
    private readonly List<BottleneckAdapterLayer> installed = [];
    private bool inferenceMode;

    /// <summary>Creates the strategy.</summary>
    /// <param name="options">The options; <see cref="AdapterLayersOptions.Default"/> when omitted.</param>
    /// <param name="adapterName">The adapter's name (a segment of its parameter names and saved keys; no dots).</param>
    /// <exception cref="InvalidOptionException">An option is out of range.</exception>
    public AdapterLayersStrategy(AdapterLayersOptions? options = null, string adapterName = AdapterLayersOptions.DefaultAdapterName)
    {
        if (string.IsNullOrWhiteSpace(adapterName) || adapterName.Contains('.', StringComparison.Ordinal))
        {
            throw new InvalidOptionException("adapterName", $"must be a non-empty name without dots, got '{adapterName}'.");
        }

        Options = options ?? AdapterLayersOptions.Default;
        Options.Validate();
        AdapterName = adapterName;
    }

    /// <summary>The options.</summary>
    public AdapterLayersOptions Options { get; }

    /// <summary>The adapter's name.</summary>
    public string AdapterName { get; }

    /// <inheritdoc />
    public string Method => "adapters";

    /// <inheritdoc />
    public CausalLanguageModel? Model { get; private set; }

    /// <summary>Always false: a bottleneck adapter is non-linear, so it cannot be folded into the base weights.</summary>
    public bool SupportsMerge => false;

    /// <summary>The inserted adapter layers, in layer order (attention before MLP within a layer).</summary>
    public IReadOnlyList<BottleneckAdapterLayer> Layers => installed;

    /// <summary>Nothing trains (loading for inference); can be set before or after <see cref="Apply"/>.</summary>
    public bool InferenceMode
    {
        get => inferenceMode;
        set
        {
            inferenceMode = value;
            foreach (var layer in installed)
            {
                foreach (var p in layer.parameters())
                {
                    p.requires_grad = !value;
                }
            }
        }
    }

    /// <summary>
    /// Trainable parameters per adapter module, <c>h·d + d + d·h + h</c> (down weight and bias, up weight and bias), with
    /// <c>d = ⌊h / reduction factor⌋</c> (at least 1).
    /// </summary>
    /// <param name="hiddenSize">h.</param>
    /// <param name="bottleneckSize">d.</param>
    /// <returns>The count.</returns>
    public static long ParametersPerAdapter(long hiddenSize, long bottleneckSize) => (2 * hiddenSize * bottleneckSize) + bottleneckSize + hiddenSize;

    /// <summary>
    /// Creates a strategy from an AdapterHub adapter folder: reads <c>adapter_config.json</c>, applies the adapters to
    /// <paramref name="model"/> and loads <c>adapter.safetensors</c>. On failure the model is left as it was.
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="isTrainable">Whether the adapters train; otherwise the strategy is in <see cref="InferenceMode"/>.</param>
    /// <param name="logger">Receives warnings (ignored config fields); none when <c>null</c>.</param>
    /// <returns>The applied strategy.</returns>
    /// <exception cref="CheckpointFormatException">The config asks for something this library cannot reproduce, or a tensor is missing, extra or of the wrong shape.</exception>
    public static AdapterLayersStrategy FromPretrained(string directory, CausalLanguageModel model, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var options = AdapterHubFiles.ReadConfig(directory, out var name, out _, logger);
        var strategy = new AdapterLayersStrategy(options, name) { InferenceMode = !isTrainable };
        return AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.Load(directory));
    }

    /// <inheritdoc />
    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(context);
        if (Model is not null)
        {
            throw new InvalidOperationException("This strategy is already applied to a model; create a new one.");
        }

        var layers = model.Body.Layers;
        if (layers.Any(l => l.AttentionOutputAdapter is not null || l.MlpOutputAdapter is not null))
        {
            throw new InvalidOperationException("The model already has sublayer adapters (another strategy is applied); remove it first.");
        }

        if (Options.LeaveOut.FirstOrDefault(i => i >= layers.Count, -1) is var outside and >= 0)
        {
            throw AdapterLayersOptions.Invalid(nameof(AdapterLayersOptions.LeaveOut), $"layer {outside} does not exist; the model has {layers.Count} layers (0–{layers.Count - 1}).");
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            originalFlags[name] = parameter.requires_grad;
            parameter.requires_grad = false;
        }

        var hidden = model.Config.HiddenSize;
        var d = Options.BottleneckSize(hidden);
        var device = model.Device;
        var generator = device.type == DeviceType.META ? null : new Generator((ulong)Options.Seed, device);
        foreach (var layer in layers.Where(l => !Options.LeaveOut.Contains(l.LayerIndex)))
        {
            if (Options.Placement == AdapterPlacement.Houlsby)
            {
                layer.AttentionOutputAdapter = Create(hidden, d, device, generator, model.training);
            }

            layer.MlpOutputAdapter = Create(hidden, d, device, generator, model.training);
        }

        Model = model;
        InferenceMode = inferenceMode;
        context.Logger.LogInformation("Bottleneck adapters ({Placement}, d = {D}) inserted in {Count} places.", Options.Placement, d, installed.Count);
    }

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters() =>
        AdapterParameters().Where(p => p.Parameter.requires_grad).ToList();

    /// <summary>Refuses: bottleneck adapters are non-linear and cannot be folded into the base weights.</summary>
    /// <exception cref="NotSupportedException">Always.</exception>
    public void MergeAndUnload() => throw new NotSupportedException(
        "Bottleneck adapters cannot be merged: each one is down-projection → non-linearity → up-projection with a residual, which no change of the base weights reproduces. Save the adapter (Save / train --out) and load it with AdapterLoader or --adapter instead.");

    /// <inheritdoc />
    public void Remove()
    {
        var model = RequireModel();
        foreach (var layer in model.Body.Layers)
        {
            layer.AttentionOutputAdapter = null;
            layer.MlpOutputAdapter = null;
        }

        foreach (var module in installed)
        {
            module.Dispose();
        }

        installed.Clear();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (originalFlags.TryGetValue(name, out var flag))
            {
                parameter.requires_grad = flag;
            }
        }

        originalFlags.Clear();
        Model = null;
    }

    /// <summary>Writes an AdapterHub adapter folder: <c>adapter_config.json</c> and <c>adapter.safetensors</c> (in the adapter dtype).</summary>
    /// <param name="directory">The folder; created when missing.</param>
    public void Save(string directory)
    {
        var model = RequireModel();
        AdapterHubFiles.WriteConfig(directory, Options, AdapterName, model.Config);
        var tensors = AdapterParameters().Select(p => new KeyValuePair<string, Tensor>(AdapterHubFiles.ToAdapterHubKey(p.Name), p.Parameter)).ToList();
        SafetensorsWriter.Write(Path.Combine(directory, AdapterHubFiles.WeightsFileName), tensors);
    }

    /// <summary>
    /// Loads an AdapterHub folder's weights into the applied adapters. The file's config must describe the same
    /// computation (placement, bottleneck size, activation, scaling, residual handling, left-out layers); its adapter
    /// name may differ (AdapterHub's <c>load_as</c>).
    /// </summary>
    /// <param name="directory">The folder.</param>
    /// <exception cref="CheckpointFormatException">The config differs, or a tensor is missing, extra or of the wrong shape.</exception>
    public void Load(string directory)
    {
        var model = RequireModel();
        var configPath = Path.Combine(directory, AdapterHubFiles.ConfigFileName);
        var saved = AdapterHubFiles.ReadConfig(directory, out var savedName, out var savedHidden, null);
        var hidden = model.Config.HiddenSize;
        var mismatch = new (string Field, object Saved, object Ours)[]
        {
            ("hidden_size", savedHidden ?? hidden, hidden),
            ("mh_adapter (placement)", saved.Placement, Options.Placement),
            ("reduction_factor (bottleneck size)", saved.BottleneckSize(hidden), Options.BottleneckSize(hidden)),
            ("non_linearity", saved.EffectiveNonLinearity, Options.EffectiveNonLinearity),
            ("scaling", saved.Scaling, Options.Scaling),
            ("original_ln_before", saved.EffectiveOriginalLnBefore, Options.EffectiveOriginalLnBefore),
            ("residual_before_ln", saved.ResidualBeforeLn, Options.ResidualBeforeLn),
            ("leave_out", string.Join(",", saved.LeaveOut.Order()), string.Join(",", Options.LeaveOut.Order())),
        }.FirstOrDefault(m => !m.Saved.Equals(m.Ours));
        if (mismatch.Field is not null)
        {
            throw new CheckpointFormatException($"{configPath}: {mismatch.Field} is {mismatch.Saved} but the applied adapters have {mismatch.Ours}; load it with AdapterLoader.Load (or FromPretrained) to take its config.", configPath);
        }

        var path = Path.Combine(directory, AdapterHubFiles.WeightsFileName);
        if (!File.Exists(path))
        {
            var hasBin = File.Exists(Path.Combine(directory, "pytorch_adapter.bin"));
            throw new FileNotFoundException($"'{directory}' holds no {AdapterHubFiles.WeightsFileName}{(hasBin ? " (only pytorch_adapter.bin, a pickle this library does not read; save it with use_safetensors=True)" : "")}.", path);
        }

        var renamed = "." + savedName + ".";
        var expected = AdapterParameters().ToDictionary(
            p => AdapterHubFiles.ToAdapterHubKey(p.Name).Replace("." + AdapterName + ".", renamed, StringComparison.Ordinal),
            p => (Tensor)p.Parameter);
        using var reader = new SafetensorsReader(path);
        reader.ReadExactly(
            expected,
            extra => new CheckpointFormatException($"Adapter file '{path}' has tensor '{extra[0]}' that the applied adapters ('{savedName}', {Options.Placement}, leave_out [{string.Join(", ", Options.LeaveOut)}]) have no place for.", path, extra[0]),
            missing => new CheckpointFormatException($"Adapter file '{path}' lacks tensor '{missing[0]}' (shape {SafetensorsTensorInfo.FormatShape(expected[missing[0]].shape)}).", path, missing[0]),
            (key, info) => new CheckpointFormatException($"Adapter file '{path}': tensor '{key}' has shape {info.ShapeText}, but the model expects {SafetensorsTensorInfo.FormatShape(expected[key].shape)}.", path, key));
    }

    private BottleneckAdapterLayer Create(int hidden, int d, Device device, Generator? generator, bool training)
    {
        var layer = new BottleneckAdapterLayer(AdapterName, new BottleneckAdapter(hidden, d, Options, device, generator), Options.EffectiveOriginalLnBefore, Options.ResidualBeforeLn);
        layer.train(training);
        installed.Add(layer);
        return layer;
    }

    private IEnumerable<NamedParameter> AdapterParameters()
    {
        var model = RequireModel();
        var marker = $".adapters.{AdapterName}.";
        return model.named_parameters()
            .Where(p => p.name.Contains(marker, StringComparison.Ordinal)
                && (p.name.Contains("." + DecoderLayer.MlpAdapterName + ".", StringComparison.Ordinal) || p.name.Contains("." + DecoderLayer.AttentionAdapterName + ".", StringComparison.Ordinal)))
            .Select(p => new NamedParameter(p.name, p.parameter));
    }

    private CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");
}
