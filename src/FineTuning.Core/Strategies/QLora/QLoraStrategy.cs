using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.QLora;

/// <summary>
/// QLoRA (Dettmers et al., 2023): the base's projections are quantized to 4 bits (NF4, double quantization, bf16
/// compute by default) with <see cref="ModelQuantizer"/> and frozen; LoRA adapters train on top in fp32
/// (<see cref="LoraStrategy"/>, PEFT's semantics and files). Embeddings, norms and <c>lm_head</c> stay in full
/// precision.
/// </summary>
/// <remarks>
/// <para>A model that is already 4-bit (loaded from a "-bnb-4bit" folder, or quantized by the caller) is not quantized
/// again: its quantization is used as it is, with a warning when it differs from <see cref="QLoraOptions.Quantization"/>.</para>
/// <para>A QLoRA adapter is a LoRA adapter: <see cref="Save"/> writes a PEFT folder (<c>peft_type: "LORA"</c>) that
/// loads onto the 4-bit base (<see cref="FromPretrained"/>, <see cref="AdapterLoader"/>) or onto the 16-bit base
/// (<see cref="LoraStrategy.FromPretrained"/>; outputs then differ by the quantization error the adapter trained
/// against).</para>
/// <para><see cref="MergeAndUnload()"/> exports 16-bit weights: each 4-bit weight is dequantized, ΔW is added in fp32,
/// and plain Linear layers are left — PEFT #2105's and Unsloth's advice. <see cref="MergeAndRequantize"/> keeps the
/// model 4-bit as PEFT's <c>merge_and_unload</c> does on bitsandbytes layers, which rounds the update away in part.</para>
/// <para><see cref="Remove"/> takes the adapters off but leaves the base 4-bit: quantization is not undone unless
/// <see cref="QLoraOptions.KeepFullPrecisionBase"/> kept the original layers.</para>
/// </remarks>
public sealed class QLoraStrategy : IParameterStrategy
{
    /// <summary>PEFT's warning when a LoRA update is merged into a 4-bit weight (<c>peft/tuners/lora/bnb.py</c>).</summary>
    public const string RequantizeWarning = "Merge lora module to 4-bit linear may get different generations due to rounding errors.";

    private readonly LoraStrategy lora;
    private readonly List<(string Name, Linear Original)> originals = [];
    private IReadOnlyList<string> quantizedModules = [];
    private ILogger logger = NullLogger.Instance;

    /// <summary>Creates the strategy; <see cref="Apply"/> quantizes the base and adds the adapter.</summary>
    /// <param name="options">The options; <see cref="QLoraOptions.Default"/> when omitted.</param>
    /// <exception cref="InvalidOptionException">An option is out of range (named as <c>QLoraOptions.Lora.R</c>, <c>QLoraOptions.Quantization.BlockSize</c>…).</exception>
    public QLoraStrategy(QLoraOptions? options = null)
    {
        Options = options ?? QLoraOptions.Default;
        Options.Validate();
        lora = new LoraStrategy(Options.Lora);
    }

    /// <summary>The options, as given.</summary>
    public QLoraOptions Options { get; }

    /// <inheritdoc />
    public string Method => "qlora";

    /// <inheritdoc />
    public CausalLanguageModel? Model => lora.Model;

    /// <summary>Merging is supported: into 16-bit weights (<see cref="MergeAndUnload()"/>) or back into 4-bit ones (<see cref="MergeAndRequantize"/>).</summary>
    public bool SupportsMerge => true;

    /// <summary>The LoRA side: adapters, active adapters, <see cref="LoraStrategy.DisableAdapters"/>, <see cref="LoraStrategy.AddAdapter"/>….</summary>
    public LoraStrategy Lora => lora;

    /// <summary>The projections <see cref="Apply"/> quantized, in model order (empty when the model came 4-bit or on the meta device).</summary>
    public IReadOnlyList<string> QuantizedModules => quantizedModules;

    /// <summary>
    /// Applies a saved adapter (PEFT folder, <c>peft_type: "LORA"</c>) to a base as QLoRA: a 16-bit base is quantized
    /// first (with <paramref name="quantization"/>, default NF4 + double quant), a 4-bit base is used as it is. On a
    /// failure the adapter is removed (quantization is not undone).
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model.</param>
    /// <param name="isTrainable">Whether the adapter trains; otherwise it is in <see cref="LoraStrategy.InferenceMode"/>.</param>
    /// <param name="quantization">How to quantize a 16-bit base; a 4-bit base's own settings when <c>null</c>.</param>
    /// <param name="logger">Receives warnings; none when <c>null</c>.</param>
    /// <returns>The applied strategy.</returns>
    public static QLoraStrategy FromPretrained(string directory, CausalLanguageModel model, bool isTrainable = false, QuantizationOptions? quantization = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var options = new QLoraOptions
        {
            Lora = LoraAdapterConfig.Read(directory, logger),
            Quantization = quantization ?? ModelQuantizer.Describe(model) ?? QuantizationOptions.Default,
        };
        var strategy = new QLoraStrategy(options);
        strategy.lora.InferenceMode = !isTrainable;
        return AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.Load(directory));
    }

    /// <summary>
    /// Checks the LoRA options against the architecture, quantizes every projection but <c>lm_head</c> (and
    /// <see cref="QuantizationOptions.SkipModules"/>) unless the model is already 4-bit, then adds the adapter. Invalid
    /// options leave the model untouched. On the meta device nothing is quantized (counts are the same either way).
    /// </summary>
    /// <inheritdoc />
    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(context);
        if (Model is not null)
        {
            throw new InvalidOperationException("This strategy is already applied to a model; create a new one.");
        }

        logger = context.Logger;
        if (model.LinearSlots().Any(slot => slot.Module is LoraLinear or ModulesToSaveWrapper))
        {
            throw new InvalidOperationException("The model already has LoRA layers (another strategy is applied); remove it first.");
        }

        // Quantizing cannot be undone, so the adapter's options are tried on a weightless twin first.
        using (var twin = CausalLanguageModel.Create(model.Config, META, model.DType))
        {
            QLoraOptions.Qualify(() => new LoraStrategy(Options.Lora).Apply(twin, StrategyContext.Empty));
        }

        if (model.Device.type == DeviceType.META)
        {
            quantizedModules = [];
        }
        else if (ModelQuantizer.Describe(model) is { } existing)
        {
            quantizedModules = [];
            if (existing with { SkipModules = Options.Quantization.SkipModules } != Options.Quantization)
            {
                logger.LogWarning("The model is already 4-bit ({Existing}), not as QLoraOptions.Quantization asks ({Requested}); training on the model's quantization.", existing, Options.Quantization);
            }
        }
        else
        {
            var replaced = ModelQuantizer.QuantizeKeepingOriginals(model, Options.Quantization);
            quantizedModules = replaced.Select(r => r.Name).ToArray();
            if (Options.KeepFullPrecisionBase)
            {
                originals.AddRange(replaced);
            }
            else
            {
                ModelQuantizer.DisposeOriginals(model, replaced);
            }
        }

        QLoraOptions.Qualify(() => lora.Apply(model, context));
    }

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters() => lora.TrainableParameters();

    /// <summary>Exports 16-bit weights: see <see cref="MergeAndUnload(ScalarType?)"/> with the compute dtype.</summary>
    public void MergeAndUnload() => MergeAndUnload(null);

    /// <summary>
    /// Merges the active adapters into 16-bit weights and unloads everything: each 4-bit weight is dequantized in
    /// <paramref name="dequantizeAs"/> (default its compute dtype, bf16 — the weight the forward pass used, so merged
    /// outputs match the unmerged ones up to the compute rounding), ΔW is added in fp32, and the sum is stored once,
    /// rounded to the model's dtype, in a plain Linear. 4-bit projections without an adapter are dequantized too, so the
    /// model holds no 4-bit layer afterwards and <see cref="IO.HuggingFaceModel.Save"/> writes an ordinary folder.
    /// </summary>
    /// <param name="dequantizeAs">The dtype to dequantize in: BFloat16, Float16 or Float32 (the raw codes × scales, without the compute rounding).</param>
    public void MergeAndUnload(ScalarType? dequantizeAs)
    {
        var model = RequireModel();
        if (dequantizeAs is not (null or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
        {
            throw new ArgumentException($"Dequantize to BFloat16, Float16 or Float32, got {dequantizeAs}.", nameof(dequantizeAs));
        }

        Linear Dequantized(nn.Module<Tensor, Tensor> layer) => LinearWeights.Copy(layer, dequantizeAs ?? ((Linear4Bit)layer).ComputeDType, model.DType);
        foreach (var layer in lora.LoraLayers.Values.Where(l => l.BaseLayer is Linear4Bit))
        {
            layer.ReplaceBaseLayer(Dequantized(layer.BaseLayer)).Dispose();
        }

        lora.MergeAndUnload();
        foreach (var slot in model.LinearSlots().Where(s => s.Module is Linear4Bit))
        {
            model.ReplaceModule(slot.FullName, Dequantized(slot.Module)).Dispose();
        }

        DropOriginals();
    }

    /// <summary>
    /// Merges the active adapters back into the 4-bit weights (dequantize, add ΔW, quantize again with the same
    /// settings, as PEFT does for bitsandbytes layers) and unloads the adapters, logging PEFT's warning: the
    /// re-quantization rounds part of the update away, so outputs differ slightly from the unmerged model's.
    /// </summary>
    public void MergeAndRequantize()
    {
        RequireModel();
        logger.LogWarning(RequantizeWarning);
        lora.MergeAndUnload();
        DropOriginals();
    }

    /// <summary>
    /// Takes the adapters off. The base stays 4-bit — quantization is not undone — unless
    /// <see cref="QLoraOptions.KeepFullPrecisionBase"/> kept the original layers, which are then put back bit for bit.
    /// </summary>
    public void Remove()
    {
        var model = RequireModel();
        lora.Remove();
        foreach (var (name, original) in originals)
        {
            model.ReplaceModule(name, original).Dispose();
        }

        originals.Clear();
    }

    /// <summary>Writes the adapters as a PEFT adapter folder (a QLoRA adapter is a LoRA adapter; nothing about the quantization is written).</summary>
    /// <param name="directory">The folder.</param>
    public void Save(string directory) => lora.Save(directory);

    /// <summary>Loads adapter weights written by <see cref="Save"/>, by <see cref="LoraStrategy.Save"/> or by PEFT.</summary>
    /// <param name="directory">The folder.</param>
    public void Load(string directory) => lora.Load(directory);

    private void DropOriginals()
    {
        originals.ForEach(o => o.Original.Dispose());
        originals.Clear();
    }

    private CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");
}
