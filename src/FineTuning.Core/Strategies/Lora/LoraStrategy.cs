using System.Globalization;
using System.Text.RegularExpressions;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// LoRA with Hugging Face PEFT's semantics: chosen Linear layers are wrapped in <see cref="LoraLinear"/> (so
/// parameter names are PEFT's, e.g. <c>model.layers.0.self_attn.q_proj.lora_A.default.weight</c>), every base
/// parameter is frozen, and adapters save to and load from PEFT adapter folders.
/// </summary>
/// <remarks>
/// <para>Several adapters can live side by side (<see cref="AddAdapter"/>, <see cref="LoadAdapter"/>); the active ones
/// (<see cref="SetActiveAdapters"/>) are summed in the forward pass and are the only trainable ones.
/// <see cref="DisableAdapters"/> runs the base model for the lifetime of a scope.</para>
/// <para><see cref="CausalLanguageModel.CountParameters"/> after <see cref="Apply"/> gives PEFT's
/// <c>print_trainable_parameters</c> numbers (adapters and modules_to_save copies included in the total).</para>
/// <para><see cref="Remove"/> restores the base weights bit for bit, including weights a PiSSA init mutated (the
/// original is kept for that) and biases trained with <see cref="LoraOptions.Bias"/>. Only weights merged and then
/// removed come back within fp32 rounding rather than bit for bit.</para>
/// </remarks>
public sealed class LoraStrategy : IParameterStrategy
{
    /// <summary>The name of the adapter <see cref="Apply"/> creates unless told otherwise (PEFT's <c>"default"</c>).</summary>
    public const string DefaultAdapterName = "default";

    private static readonly Regex LayerIndex = new(@"^.*\.[^.]*\.(\d+)\.", RegexOptions.CultureInvariant);
    private static readonly string[] AdapterSegments = ["lora_A", "lora_B", "lora_magnitude_vector", "modules_to_save"];

    private readonly string firstAdapterName;
    private readonly Dictionary<string, AdapterEntry> adapters = new(StringComparer.Ordinal);
    private readonly List<string> adapterOrder = [];
    private readonly Dictionary<string, LoraLinear> layers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ModulesToSaveWrapper> savedModules = new(StringComparer.Ordinal);
    private readonly Dictionary<string, bool> originalFlags = new(StringComparer.Ordinal);
    private readonly List<(Tensor Live, Tensor Original)> originalBiases = [];
    private IReadOnlyList<string> active = [];
    private int disableDepth;
    private bool inferenceMode;
    private ILogger logger = NullLogger.Instance;

    /// <summary>Creates the strategy; <see cref="Apply"/> adds the first adapter and activates it.</summary>
    /// <param name="options">The first adapter's options; <see cref="LoraOptions.Default"/> when omitted.</param>
    /// <param name="adapterName">The first adapter's name.</param>
    /// <exception cref="InvalidOptionException">An option is out of range.</exception>
    public LoraStrategy(LoraOptions? options = null, string adapterName = DefaultAdapterName)
    {
        ValidateAdapterName(adapterName);
        Options = options ?? LoraOptions.Default;
        Options.Validate();
        firstAdapterName = adapterName;
    }

    /// <summary>The options of the first adapter, as given.</summary>
    public LoraOptions Options { get; }

    /// <inheritdoc />
    public string Method => "lora";

    /// <inheritdoc />
    public CausalLanguageModel? Model { get; private set; }

    /// <inheritdoc />
    public bool SupportsMerge => true;

    /// <summary>The adapters, in the order they were added.</summary>
    public IReadOnlyList<string> AdapterNames => adapterOrder;

    /// <summary>The adapters used by the forward pass and trained.</summary>
    public IReadOnlyList<string> ActiveAdapters => active;

    /// <summary>The LoRA-wrapped layers by full name.</summary>
    public IReadOnlyDictionary<string, LoraLinear> LoraLayers => layers;

    /// <summary>The modules_to_save wrappers by full name.</summary>
    public IReadOnlyDictionary<string, ModulesToSaveWrapper> SavedModules => savedModules;

    /// <summary>Whether any adapter is merged into the base weights.</summary>
    public bool IsMerged => layers.Values.Any(layer => layer.IsMerged);

    /// <summary>Whether a <see cref="DisableAdapters"/> scope is open.</summary>
    public bool AdaptersDisabled => disableDepth > 0;

    /// <summary>
    /// Inference mode (PEFT's <c>inference_mode</c> / <c>is_trainable=false</c>): nothing trains, not even the
    /// active adapters. Can be set before or after <see cref="Apply"/>.
    /// </summary>
    public bool InferenceMode
    {
        get => inferenceMode;
        set
        {
            inferenceMode = value;
            RefreshTrainability();
        }
    }

    /// <summary>PEFT's default targets of a model family: <c>q_proj</c> and <c>v_proj</c> for Llama, Mistral and Qwen2.</summary>
    /// <param name="family">The family.</param>
    /// <returns>The targets.</returns>
    public static LoraTargetModules DefaultTargetModules(ModelFamily family) => family switch
    {
        ModelFamily.Llama or ModelFamily.Mistral or ModelFamily.Qwen2 => LoraTargetModules.FromNames("q_proj", "v_proj"),
        _ => throw new ArgumentOutOfRangeException(nameof(family), family, "No default LoRA targets for this family; set LoraOptions.TargetModules."),
    };

    /// <summary>
    /// Creates a strategy from a PEFT adapter folder (PEFT's <c>PeftModel.from_pretrained</c>): reads
    /// <c>adapter_config.json</c>, applies the adapter to <paramref name="model"/> and loads
    /// <c>adapter_model.safetensors</c>. On failure the model is left as it was.
    /// </summary>
    /// <param name="directory">The adapter folder.</param>
    /// <param name="model">The base model it was trained on.</param>
    /// <param name="adapterName">The name to give the adapter.</param>
    /// <param name="isTrainable">Whether the adapter trains; otherwise the strategy is in <see cref="InferenceMode"/>.</param>
    /// <param name="logger">Receives warnings (ignored config keys…); none when <c>null</c>.</param>
    /// <returns>The applied strategy.</returns>
    /// <exception cref="CheckpointFormatException">A tensor is missing, extra or of the wrong shape, or targets a module the model lacks.</exception>
    /// <exception cref="NotSupportedException">The config uses a PEFT feature this library cannot reproduce.</exception>
    public static LoraStrategy FromPretrained(string directory, CausalLanguageModel model, string adapterName = DefaultAdapterName, bool isTrainable = false, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        var options = LoraAdapterConfig.Read(directory, logger);
        var strategy = new LoraStrategy(options, adapterName) { InferenceMode = !isTrainable };
        return AdapterLoader.ApplyAndLoad(strategy, model, logger, s => s.LoadWeights(directory, adapterName));
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

        if (model.LinearSlots().Any(slot => slot.Module is LoraLinear or ModulesToSaveWrapper))
        {
            throw new InvalidOperationException("The model already has LoRA layers (another strategy is applied); remove it first.");
        }

        var entry = Plan(model, firstAdapterName, Options);
        logger = context.Logger;
        foreach (var (name, parameter) in model.named_parameters())
        {
            originalFlags[name] = parameter.requires_grad;
        }

        Model = model;
        Install(firstAdapterName, entry);
        SetActiveAdapters(firstAdapterName);
    }

    /// <summary>Adds an adapter (PEFT's <c>add_adapter</c>); it is not active, so it does not train or run until <see cref="SetActiveAdapters"/>.</summary>
    /// <param name="adapterName">A new name without dots.</param>
    /// <param name="options">The adapter's options.</param>
    /// <exception cref="InvalidOptionException">The options do not fit the model or clash with another adapter.</exception>
    public void AddAdapter(string adapterName, LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var model = RequireModel();
        ValidateAdapterName(adapterName);
        if (adapters.ContainsKey(adapterName))
        {
            throw new ArgumentException($"An adapter named '{adapterName}' already exists.", nameof(adapterName));
        }

        Install(adapterName, Plan(model, adapterName, options));
    }

    /// <summary>
    /// Chooses the adapters the forward pass sums (PEFT's <c>set_adapter</c>); they become trainable (unless in
    /// <see cref="InferenceMode"/>) and all others are frozen, so build the optimizer after this call. A merged model
    /// is unmerged first.
    /// </summary>
    /// <param name="adapterNames">Existing adapter names (none = no adapter runs).</param>
    public void SetActiveAdapters(params string[] adapterNames)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        RequireModel();
        foreach (var name in adapterNames)
        {
            RequireAdapter(name);
        }

        var clash = savedModules.FirstOrDefault(w => adapterNames.Count(a => w.Value.GetCopy(a) is not null) > 1);
        if (clash.Value is not null)
        {
            throw new InvalidOperationException($"Module '{clash.Key}' has a modules_to_save copy in several of [{string.Join(", ", adapterNames)}]; only one of them can be active.");
        }

        if (IsMerged)
        {
            logger.LogWarning("Adapters cannot be set while merged; unmerging first.");
            Unmerge();
        }

        active = adapterNames.ToArray();
        foreach (var layer in layers.Values)
        {
            layer.SetActiveAdapters(active);
        }

        foreach (var wrapper in savedModules.Values)
        {
            wrapper.SetActiveAdapters(active);
        }

        RefreshTrainability();
    }

    /// <summary>
    /// Runs the base model until the returned scope is disposed (PEFT's <c>with model.disable_adapter():</c>); merged
    /// adapters are unmerged first. Scopes nest.
    /// </summary>
    /// <returns>The scope; disposing it re-enables the adapters.</returns>
    public IDisposable DisableAdapters()
    {
        RequireModel();
        if (active.Any(name => adapters[name].Options.Bias != LoraBias.None))
        {
            logger.LogWarning("An active adapter trains biases (bias != none): with adapters disabled the output still differs from the base model's.");
        }

        if (disableDepth++ == 0)
        {
            SetDisabled(true);
        }

        return new DisableScope(this);
    }

    /// <summary>
    /// Deletes an adapter (PEFT's <c>delete_adapter</c>). When it was active, the remaining active adapters stay
    /// active, or, if none remain, the first remaining adapter by name becomes active (with a warning).
    /// </summary>
    /// <param name="adapterName">The adapter.</param>
    /// <exception cref="InvalidOperationException">The adapter is merged.</exception>
    public void DeleteAdapter(string adapterName)
    {
        RequireModel();
        RequireAdapter(adapterName);
        if (layers.Values.Any(layer => layer.MergedAdapters.Contains(adapterName)))
        {
            throw new InvalidOperationException($"Adapter '{adapterName}' is merged; unmerge before deleting it.");
        }

        foreach (var layer in layers.Values.Where(layer => layer.HasAdapter(adapterName)))
        {
            layer.DeleteAdapter(adapterName);
        }

        foreach (var wrapper in savedModules.Values)
        {
            wrapper.DeleteAdapter(adapterName);
        }

        adapters.Remove(adapterName);
        adapterOrder.Remove(adapterName);
        var remaining = active.Where(name => name != adapterName).ToArray();
        if (remaining.Length == 0 && active.Contains(adapterName) && adapterOrder.Count > 0)
        {
            remaining = [adapterOrder.Order(StringComparer.Ordinal).First()];
            logger.LogWarning("Deleted the active adapter '{Deleted}'; '{Active}' is now active.", adapterName, remaining[0]);
        }

        SetActiveAdapters(remaining);
    }

    /// <summary>
    /// Adds an adapter that combines existing ones (PEFT's <c>add_weighted_adapter</c>, types <c>linear</c> and
    /// <c>cat</c>); it is not activated. Its rank and alpha are equal (scaling 1) and it wraps the modules any source
    /// adapter wraps. Unlike PEFT, the new adapter has no rsLoRA (which would rescale it by √r), no bias training and
    /// no modules_to_save copies; DoRA sources are refused.
    /// </summary>
    /// <param name="adapterNames">The source adapters.</param>
    /// <param name="weights">One weight per source (negative weights subtract).</param>
    /// <param name="newAdapterName">The new adapter's name.</param>
    /// <param name="combination">How to combine.</param>
    /// <exception cref="ArgumentException">Unknown or duplicate names, counts that differ, or (linear) different ranks.</exception>
    /// <exception cref="NotSupportedException">A source adapter uses DoRA.</exception>
    public void AddWeightedAdapter(IReadOnlyList<string> adapterNames, IReadOnlyList<double> weights, string newAdapterName, LoraCombination combination = LoraCombination.Linear)
    {
        ArgumentNullException.ThrowIfNull(adapterNames);
        ArgumentNullException.ThrowIfNull(weights);
        var model = RequireModel();
        ValidateAdapterName(newAdapterName);
        if (adapters.ContainsKey(newAdapterName))
        {
            throw new ArgumentException($"An adapter named '{newAdapterName}' already exists.", nameof(newAdapterName));
        }

        if (adapterNames.Count == 0 || adapterNames.Count != weights.Count)
        {
            throw new ArgumentException($"Give one weight per adapter (got {adapterNames.Count} adapters and {weights.Count} weights).", nameof(weights));
        }

        var sources = adapterNames.Select(name => adapters[RequireAdapter(name)].Options).ToArray();
        if (sources.Any(o => o.UseDora))
        {
            throw new NotSupportedException("Combining DoRA adapters is not supported.");
        }

        var ranks = sources.Select(o => o.RankPattern.Values.Append(o.R).Max()).ToArray();
        if (adapterNames.Count == 1)
        {
            combination = LoraCombination.Linear;
        }

        if (combination == LoraCombination.Linear && ranks.Distinct().Count() > 1)
        {
            throw new ArgumentException($"All adapters must have the same r to combine them linearly; got r = {string.Join(", ", ranks)}.", nameof(adapterNames));
        }

        var rank = combination == LoraCombination.Cat ? ranks.Sum() : ranks[0];
        var targets = layers.Where(l => adapterNames.Any(l.Value.HasAdapter)).Select(l => l.Key).ToArray();
        var options = sources[0] with
        {
            R = rank,
            Alpha = rank,
            TargetModules = LoraTargetModules.FromNames(targets),
            ExcludeModules = null,
            LayersToTransform = null,
            RankPattern = new Dictionary<string, int>(),
            AlphaPattern = new Dictionary<string, double>(),
            UseRsLora = false,
            Bias = LoraBias.None,
            ModulesToSave = null,
            Init = LoraInit.Default,
            PissaNiter = null,
        };
        Install(newAdapterName, Plan(model, newAdapterName, options));
        using var _ = no_grad();
        foreach (var layer in layers.Values.Where(l => l.HasAdapter(newAdapterName)))
        {
            Combine(layer, adapterNames, weights, newAdapterName, combination);
        }
    }

    /// <summary>Merges adapters into the base weights, keeping the wrappers (PEFT's <c>merge_adapter</c>).</summary>
    /// <param name="adapterNames">The adapters to merge; <c>null</c> = the active ones.</param>
    /// <param name="safeMerge">Check each merged weight for NaN/infinity before writing it.</param>
    /// <exception cref="InvalidOperationException">A wrapped head is tied to the embeddings, or (safe merge) a result is not finite.</exception>
    public void Merge(IReadOnlyList<string>? adapterNames = null, bool safeMerge = false)
    {
        RequireModel();
        var names = adapterNames ?? active;
        foreach (var name in names)
        {
            RequireAdapter(name);
        }

        var tied = layers.FirstOrDefault(l => l.Value.BaseLayer is TiedLinear && names.Any(l.Value.HasAdapter));
        if (tied.Value is not null)
        {
            throw new InvalidOperationException($"Cannot merge into '{tied.Key}': it is tied to model.embed_tokens, so the merge would change the input embeddings too.");
        }

        foreach (var layer in layers.Values)
        {
            layer.Merge(names, safeMerge);
        }
    }

    /// <summary>Undoes every merge, most recent first (PEFT's <c>unmerge_adapter</c>).</summary>
    public void Unmerge()
    {
        RequireModel();
        foreach (var layer in layers.Values)
        {
            layer.Unmerge();
        }
    }

    /// <inheritdoc />
    public void MergeAndUnload() => MergeAndUnload(null, safeMerge: false);

    /// <summary>
    /// Merges adapters, then puts every base layer back in its slot (and each modules_to_save module's active copy in
    /// place of the original), leaving a plain model that <see cref="HuggingFaceModel.Save"/> writes as a Hugging
    /// Face folder. The requires_grad flags are restored; the strategy is detached.
    /// </summary>
    /// <param name="adapterNames">The adapters to merge; <c>null</c> = the active ones.</param>
    /// <param name="safeMerge">Check each merged weight for NaN/infinity before writing it.</param>
    public void MergeAndUnload(IReadOnlyList<string>? adapterNames, bool safeMerge)
    {
        var model = RequireModel();
        var tiedCopy = savedModules.FirstOrDefault(w => w.Value.OriginalModule is TiedLinear && active.Any(a => w.Value.GetCopy(a) is not null));
        if (tiedCopy.Value is not null)
        {
            throw new InvalidOperationException($"'{tiedCopy.Key}' is tied to model.embed_tokens, so its trained modules_to_save copy cannot replace it in this model (PEFT unties the config; this model's config is fixed). Save the adapter instead, or train with an untied head.");
        }

        if (disableDepth > 0)
        {
            SetDisabled(false);
        }

        Merge(adapterNames, safeMerge);
        foreach (var (name, wrapper) in savedModules)
        {
            var keep = wrapper.ActiveCopy ?? wrapper.OriginalModule;
            model.ReplaceModule(name, keep);
            foreach (var adapter in wrapper.AdapterNames.ToArray().Where(a => wrapper.GetCopy(a) != keep))
            {
                wrapper.DeleteAdapter(adapter);
            }
        }

        foreach (var (_, original) in originalBiases)
        {
            original.Dispose();
        }

        originalBiases.Clear();
        Detach(model);
    }

    /// <summary>
    /// Unloads every adapter without merging (PEFT's <c>unload</c>) and restores the base model bit for bit: PiSSA's
    /// mutated weights and trained biases are put back from the copies kept at <see cref="Apply"/>. Merged adapters
    /// are unmerged first, which is exact only up to fp32 rounding for those layers.
    /// </summary>
    public void Remove()
    {
        var model = RequireModel();
        if (IsMerged)
        {
            logger.LogWarning("Removing merged adapters: they are unmerged first, which restores the base weights up to rounding only.");
            Unmerge();
        }

        foreach (var layer in layers.Values)
        {
            layer.RestoreMutatedBaseWeight();
        }

        foreach (var (name, wrapper) in savedModules)
        {
            model.ReplaceModule(name, wrapper.OriginalModule);
            foreach (var adapter in wrapper.AdapterNames.ToArray())
            {
                wrapper.DeleteAdapter(adapter);
            }
        }

        using (no_grad())
        {
            foreach (var (live, original) in originalBiases)
            {
                live.copy_(original);
                original.Dispose();
            }
        }

        originalBiases.Clear();
        Detach(model);
    }

    /// <inheritdoc />
    public IReadOnlyList<NamedParameter> TrainableParameters() =>
        RequireModel().named_parameters().Where(p => p.parameter.requires_grad).Select(p => new NamedParameter(p.name, p.parameter)).ToList();

    /// <summary>The effective options of an adapter: targets resolved (the family default or <c>all-linear</c> become a list of names), as saved.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The options.</returns>
    public LoraOptions GetAdapterOptions(string adapterName) => adapters[RequireAdapter(adapterName)].Options;

    /// <summary>The full names of the modules an adapter wraps, in model order.</summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>The names.</returns>
    public IReadOnlyList<string> TargetedModules(string adapterName) => adapters[RequireAdapter(adapterName)].Targets;

    /// <summary>
    /// An adapter's tensors under PEFT's saved keys (the live parameters, not copies): A and B, DoRA magnitudes,
    /// biases per <see cref="LoraOptions.Bias"/> and modules_to_save copies.
    /// </summary>
    /// <param name="adapterName">The adapter.</param>
    /// <returns>Keys such as <c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c> and their tensors.</returns>
    public IReadOnlyDictionary<string, Tensor> AdapterStateDict(string adapterName)
    {
        var model = RequireModel();
        var options = adapters[RequireAdapter(adapterName)].Options;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (BelongsTo(name, adapterName, options.Bias))
            {
                result[PeftAdapterFiles.ToPeftKey(name, adapterName)] = parameter;
            }
        }

        return result;
    }

    /// <summary>
    /// Writes every adapter as a PEFT adapter folder: <c>adapter_config.json</c> and <c>adapter_model.safetensors</c>,
    /// the adapter <c>default</c> in <paramref name="directory"/>, others in <c>directory/&lt;name&gt;/</c>.
    /// </summary>
    /// <param name="directory">The folder; created when missing.</param>
    public void Save(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        RequireModel();
        foreach (var name in adapterOrder)
        {
            var target = PeftAdapterFiles.AdapterDirectory(directory, name);
            PeftAdapterFiles.WriteWeights(target, AdapterStateDict(name));
            LoraAdapterConfig.Write(target, adapters[name].Options);
        }
    }

    /// <summary>Loads the weights of every adapter from a folder written by <see cref="Save"/> (or by PEFT), the adapter <c>default</c> from the folder itself.</summary>
    /// <param name="directory">The folder.</param>
    /// <exception cref="CheckpointFormatException">A tensor is missing, extra or of the wrong shape.</exception>
    public void Load(string directory)
    {
        RequireModel();
        foreach (var name in adapterOrder)
        {
            LoadWeights(PeftAdapterFiles.AdapterDirectory(directory, name), name);
        }
    }

    /// <summary>Adds an adapter from a PEFT adapter folder (PEFT's <c>load_adapter</c>); it is not activated.</summary>
    /// <param name="directory">The adapter folder (with adapter_config.json and adapter_model.safetensors).</param>
    /// <param name="adapterName">The name to give it.</param>
    public void LoadAdapter(string directory, string adapterName)
    {
        AddAdapter(adapterName, LoraAdapterConfig.Read(directory, logger));
        try
        {
            LoadWeights(directory, adapterName);
        }
        catch
        {
            DeleteAdapter(adapterName);
            throw;
        }
    }

    /// <summary>Checks an adapter name: not empty and without dots (it becomes a module name).</summary>
    /// <param name="adapterName">The name.</param>
    internal static void ValidateAdapterName(string adapterName)
    {
        if (string.IsNullOrEmpty(adapterName) || adapterName.Contains('.', StringComparison.Ordinal))
        {
            throw new ArgumentException($"An adapter name must be non-empty and contain no '.', got '{adapterName}'.", nameof(adapterName));
        }
    }

    private void LoadWeights(string directory, string adapterName)
    {
        if (layers.Values.Any(layer => layer.MergedAdapters.Contains(adapterName)))
        {
            throw new InvalidOperationException($"Adapter '{adapterName}' is merged; unmerge before loading its weights.");
        }

        PeftAdapterFiles.ReadWeights(directory, AdapterStateDict(adapterName), key => ExplainUnexpected(key, adapterName));
    }

    private string ExplainUnexpected(string key, string adapterName)
    {
        var model = RequireModel();
        if (!key.StartsWith(PeftAdapterFiles.KeyPrefix, StringComparison.Ordinal))
        {
            return $"PEFT keys start with '{PeftAdapterFiles.KeyPrefix}'.";
        }

        var module = PeftAdapterFiles.ModuleOf(key);
        var known = model.named_modules().Select(m => m.name).Concat(model.LinearSlots().Select(s => s.FullName)).ToHashSet(StringComparer.Ordinal);
        return known.Contains(module)
            ? $"module '{module}' exists, but adapter '{adapterName}' (target_modules {GetAdapterOptions(adapterName).TargetModules}, bias, modules_to_save) does not select it."
            : $"the model has no module '{module}', so the adapter was trained for a different base model.";
    }

    private AdapterEntry Plan(CausalLanguageModel model, string adapterName, LoraOptions options)
    {
        options.Validate();
        if (options.Bias != LoraBias.None && adapters.FirstOrDefault(a => a.Value.Options.Bias != LoraBias.None) is { Value: not null } other)
        {
            throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.Bias)}", $"only one adapter per model may train biases; '{other.Key}' already has bias = {LoraAdapterConfig.BiasName(other.Value.Options.Bias)}.");
        }

        var slots = model.LinearSlots();
        var targets = options.TargetModules ?? DefaultTargetModules(model.Config.Family);
        if (targets.IsAllLinear)
        {
            targets = LoraTargetModules.FromNames(slots.Where(s => s.FullName != "lm_head").Select(s => s.FullName[(s.FullName.LastIndexOf('.') + 1)..]));
        }

        if (options.LayersToTransform?.FirstOrDefault(i => i >= model.Config.NumHiddenLayers, -1) is >= 0 and var outOfRange)
        {
            throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.LayersToTransform)}", $"layer {outOfRange} does not exist; the model has {model.Config.NumHiddenLayers} layers.");
        }

        var chosen = slots
            .Where(s => IsTarget(targets, s.FullName, options.LayersToTransform) && !(options.ExcludeModules?.Matches(s.FullName) ?? false))
            .ToList();
        if (chosen.Count == 0)
        {
            var kinds = slots.Select(s => s.FullName[(s.FullName.LastIndexOf('.') + 1)..]).Distinct();
            throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.TargetModules)}",
                $"no module matches {targets}{(options.ExcludeModules is null ? "" : $" (excluding {options.ExcludeModules})")}. The model's Linear modules are {string.Join(", ", kinds)}, with full names such as '{slots.Select(s => s.FullName).FirstOrDefault(n => n.Contains('.', StringComparison.Ordinal), slots[0].FullName)}'; a list entry matches a full name or its '.'-suffix, a pattern must match the whole full name.");
        }

        foreach (var slot in chosen)
        {
            if (slot.Module is ModulesToSaveWrapper)
            {
                throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.TargetModules)}", $"'{slot.FullName}' is in another adapter's modules_to_save and cannot also get LoRA.");
            }

            var rank = options.RankFor(slot.FullName);
            var baseLayer = slot.Module is LoraLinear wrapped ? wrapped.BaseLayer : slot.Module;
            var (outFeatures, inFeatures) = LinearWeights.Shape(baseLayer);
            if (options.Init == LoraInit.Pissa && baseLayer is Quantization.IQuantizedLinear)
            {
                throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.Init)}", $"PiSSA needs a full-precision base weight, but '{slot.FullName}' is quantized; initialise PiSSA before quantizing and quantize the residual model.");
            }

            if (options.Init == LoraInit.Pissa && rank > Math.Min(outFeatures, inFeatures))
            {
                throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.R)}", $"PiSSA needs r ≤ min(in, out) of '{slot.FullName}' ({Math.Min(outFeatures, inFeatures)}), got {rank}.");
            }
        }

        var saved = new List<string>();
        foreach (var entry in options.ModulesToSave ?? [])
        {
            var matches = slots.Where(s => LoraTargetModules.MatchesName([entry], s.FullName)).ToList();
            if (matches.Count == 0)
            {
                var elsewhere = model.named_modules().Any(m => LoraTargetModules.MatchesName([entry], m.name));
                throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.ModulesToSave)}", elsewhere
                    ? $"'{entry}' is not a Linear projection or lm_head; only those can be trained in full next to LoRA."
                    : $"no module is named '{entry}'; candidates are {string.Join(", ", slots.Select(s => s.FullName[(s.FullName.LastIndexOf('.') + 1)..]).Distinct())}.");
            }

            foreach (var match in matches)
            {
                if (chosen.Contains(match) || match.Module is LoraLinear)
                {
                    throw new InvalidOptionException($"{nameof(LoraOptions)}.{nameof(LoraOptions.ModulesToSave)}", $"'{match.FullName}' also gets LoRA; a module is either adapted or saved in full.");
                }

                saved.Add(match.FullName);
            }
        }

        var resolved = options with { TargetModules = targets };
        return new AdapterEntry(resolved, chosen.Select(s => s.FullName).ToArray(), saved.Distinct().ToArray());
    }

    /// <summary>PEFT's <c>check_target_module_exists</c>: a pattern must match the whole name; a list entry must equal it, or be its <c>"."</c>-suffix within <see cref="LoraOptions.LayersToTransform"/>.</summary>
    private static bool IsTarget(LoraTargetModules targets, string fullName, IReadOnlyList<int>? layersToTransform)
    {
        if (!targets.IsList)
        {
            return targets.Matches(fullName);
        }

        if (targets.Names!.Contains(fullName))
        {
            return true;
        }

        if (!targets.Matches(fullName))
        {
            return false;
        }

        if (layersToTransform is null || layersToTransform.Count == 0)
        {
            return true;
        }

        var match = LayerIndex.Match(fullName);
        return match.Success && layersToTransform.Contains(int.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    private void Install(string adapterName, AdapterEntry entry)
    {
        var model = RequireModel();
        var options = entry.Options;
        var generator = model.Device.type == DeviceType.META ? null : new Generator((ulong)options.Seed, model.Device);
        try
        {
            foreach (var target in entry.Targets)
            {
                GetOrWrap(model, target).AddAdapter(adapterName, LoraLayerConfig.From(options, target), generator);
            }
        }
        finally
        {
            generator?.Dispose();
        }

        foreach (var name in entry.SavedModules)
        {
            if (!savedModules.TryGetValue(name, out var wrapper))
            {
                var slot = model.LinearSlots().First(s => s.FullName == name);
                wrapper = new ModulesToSaveWrapper(slot.Module) { AdaptersDisabled = disableDepth > 0 };
                wrapper.SetActiveAdapters(active);
                model.ReplaceModule(name, wrapper);
                savedModules[name] = wrapper;
            }

            wrapper.AddAdapter(adapterName);
        }

        SnapshotBiases(model, adapterName, options.Bias);
        adapters[adapterName] = entry;
        adapterOrder.Add(adapterName);
        RefreshTrainability();
    }

    private LoraLinear GetOrWrap(CausalLanguageModel model, string fullName)
    {
        if (layers.TryGetValue(fullName, out var existing))
        {
            return existing;
        }

        var slot = model.LinearSlots().First(s => s.FullName == fullName);
        var wrapper = new LoraLinear(slot.Module) { AdaptersDisabled = disableDepth > 0 };
        wrapper.SetActiveAdapters(active);
        model.ReplaceModule(fullName, wrapper);
        layers[fullName] = wrapper;
        return wrapper;
    }

    /// <summary>Keeps a copy of every bias an adapter will train, so <see cref="Remove"/> can put it back.</summary>
    private void SnapshotBiases(CausalLanguageModel model, string adapterName, LoraBias bias)
    {
        if (bias == LoraBias.None || model.Device.type == DeviceType.META)
        {
            return;
        }

        using var _ = no_grad();
        foreach (var (name, parameter) in model.named_parameters())
        {
            if (IsTrainedBias(name, adapterName, bias) && !originalBiases.Any(b => ReferenceEquals(b.Live, parameter)))
            {
                originalBiases.Add((parameter, parameter.detach().clone().DetachFromDisposeScope()));
            }
        }
    }

    /// <summary>Freezes everything, then unfreezes the active adapters' parameters, their modules_to_save copies and biases (unless in inference mode).</summary>
    private void RefreshTrainability()
    {
        if (Model is not { } model)
        {
            return;
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            parameter.requires_grad = !inferenceMode && active.Any(adapter => BelongsTo(name, adapter, adapters[adapter].Options.Bias));
        }
    }

    /// <summary>Whether a parameter is part of an adapter's state: its LoRA weights, magnitude, modules_to_save copy, or a bias it trains.</summary>
    private bool BelongsTo(string parameterName, string adapterName, LoraBias bias)
    {
        var segments = parameterName.Split('.');
        for (var i = 0; i + 1 < segments.Length; i++)
        {
            if (segments[i + 1] == adapterName && AdapterSegments.Contains(segments[i]))
            {
                return true;
            }
        }

        return IsTrainedBias(parameterName, adapterName, bias);
    }

    /// <summary>PEFT's bias modes: <c>all</c> = every base bias, <c>lora_only</c> = the base biases of layers this adapter wraps.</summary>
    private bool IsTrainedBias(string parameterName, string adapterName, LoraBias bias)
    {
        if (bias == LoraBias.None || !parameterName.EndsWith(".bias", StringComparison.Ordinal))
        {
            return false;
        }

        var segments = parameterName.Split('.');
        if (segments.Any(s => AdapterSegments.Contains(s) || s == "original_module"))
        {
            return false;
        }

        if (bias == LoraBias.All)
        {
            return true;
        }

        const string suffix = ".base_layer.bias";
        return parameterName.EndsWith(suffix, StringComparison.Ordinal)
            && layers.TryGetValue(parameterName[..^suffix.Length], out var layer)
            && layer.HasAdapter(adapterName);
    }

    private static void Combine(LoraLinear layer, IReadOnlyList<string> sources, IReadOnlyList<double> weights, string target, LoraCombination combination)
    {
        using var scope = NewDisposeScope();
        var a = layer.LoraA(target).weight!;
        var b = layer.LoraB(target).weight!;
        var present = sources.Select((name, i) => (Name: name, Weight: weights[i])).Where(s => layer.HasAdapter(s.Name)).ToList();
        if (present.Count == 0)
        {
            a.zero_();
            b.zero_();
            return;
        }

        Tensor Weight(string name, bool isA) => (isA ? layer.LoraA(name) : layer.LoraB(name)).weight!.to(ScalarType.Float32);
        if (combination == LoraCombination.Cat)
        {
            var stackedA = cat(present.Select(s => Weight(s.Name, isA: true) * (s.Weight * layer.GetConfig(s.Name).Scaling)).ToList(), dim: 0);
            var stackedB = cat(present.Select(s => Weight(s.Name, isA: false)).ToList(), dim: 1);
            a.zero_();
            b.zero_();
            a.narrow(0, 0, stackedA.shape[0]).copy_(stackedA);
            b.narrow(1, 0, stackedB.shape[1]).copy_(stackedB);
            return;
        }

        var sumA = zeros_like(Weight(present[0].Name, isA: true));
        var sumB = zeros_like(Weight(present[0].Name, isA: false));
        foreach (var (name, weight) in present)
        {
            var scaled = weight * layer.GetConfig(name).Scaling;
            var root = Math.Sqrt(Math.Abs(scaled));
            sumA = sumA + Weight(name, isA: true) * (scaled >= 0 ? root : -root);
            sumB = sumB + Weight(name, isA: false) * root;
        }

        a.copy_(sumA);
        b.copy_(sumB);
    }

    private void SetDisabled(bool disabled)
    {
        foreach (var layer in layers.Values)
        {
            layer.AdaptersDisabled = disabled;
        }

        foreach (var wrapper in savedModules.Values)
        {
            wrapper.AdaptersDisabled = disabled;
        }

        if (!disabled)
        {
            disableDepth = 0;
        }
    }

    /// <summary>Puts every base layer back in its slot, frees the adapters, restores the requires_grad flags and forgets the model.</summary>
    private void Detach(CausalLanguageModel model)
    {
        foreach (var (name, layer) in layers)
        {
            model.ReplaceModule(name, layer.BaseLayer);
            layer.DisposeAdapters();
        }

        foreach (var (name, parameter) in model.named_parameters())
        {
            parameter.requires_grad = originalFlags.GetValueOrDefault(name, true);
        }

        layers.Clear();
        savedModules.Clear();
        adapters.Clear();
        adapterOrder.Clear();
        originalFlags.Clear();
        active = [];
        disableDepth = 0;
        Model = null;
    }

    private string RequireAdapter(string adapterName) => adapters.ContainsKey(adapterName)
        ? adapterName
        : throw new ArgumentException($"No adapter named '{adapterName}'; the adapters are: {string.Join(", ", adapterOrder)}.", nameof(adapterName));

    private CausalLanguageModel RequireModel() =>
        Model ?? throw new InvalidOperationException("The strategy is not applied to a model; call Apply first.");

    private sealed record AdapterEntry(LoraOptions Options, IReadOnlyList<string> Targets, IReadOnlyList<string> SavedModules);

    private sealed class DisableScope(LoraStrategy owner) : IDisposable
    {
        private bool disposed;

        public void Dispose()
        {
            if (disposed || owner.Model is null)
            {
                return;
            }

            disposed = true;
            if (--owner.disableDepth == 0)
            {
                owner.SetDisabled(false);
            }
        }
    }
}
