using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// Options of one LoRA adapter, with Hugging Face PEFT's defaults and semantics (<c>LoraConfig</c>): the update of
/// a wrapped Linear is <c>scaling·B·A·x</c> with A <c>[r, in]</c>, B <c>[out, r]</c> and
/// <c>scaling = alpha / r</c> (<c>alpha / √r</c> with rsLoRA).
/// </summary>
public sealed record LoraOptions
{
    private static readonly IReadOnlyDictionary<string, int> NoRanks = new Dictionary<string, int>();
    private static readonly IReadOnlyDictionary<string, double> NoAlphas = new Dictionary<string, double>();

    /// <summary>PEFT's defaults: r 8, alpha 8, no dropout, q_proj and v_proj.</summary>
    public static LoraOptions Default { get; } = new();

    /// <summary>The rank (<c>r</c>); default 8.</summary>
    public int R { get; init; } = 8;

    /// <summary>The scaling numerator (<c>lora_alpha</c>); default 8.</summary>
    public double Alpha { get; init; } = 8;

    /// <summary>Dropout applied to the LoRA branch's input only (<c>lora_dropout</c>); default 0.</summary>
    public double Dropout { get; init; }

    /// <summary>
    /// The modules to wrap (<c>target_modules</c>); <c>null</c> = the family's default, <c>q_proj</c> and
    /// <c>v_proj</c> for Llama, Mistral and Qwen2.
    /// </summary>
    public LoraTargetModules? TargetModules { get; init; }

    /// <summary>Modules never wrapped even when targeted (<c>exclude_modules</c>; a list or a pattern).</summary>
    public LoraTargetModules? ExcludeModules { get; init; }

    /// <summary>
    /// Only wrap modules of these decoder layers (<c>layers_to_transform</c>); only with a list
    /// <see cref="TargetModules"/> (or the default), and not applied to entries that equal a full name.
    /// </summary>
    public IReadOnlyList<int>? LayersToTransform { get; init; }

    /// <summary>
    /// Per-module ranks (<c>rank_pattern</c>): a key selects the modules whose full name matches
    /// <c>(.*\.)?(key)$</c>; the first matching key, in enumeration order, wins.
    /// </summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = NoRanks;

    /// <summary>Per-module alphas (<c>alpha_pattern</c>), matched like <see cref="RankPattern"/>.</summary>
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = NoAlphas;

    /// <summary>Which biases train and are saved with the adapter (<c>bias</c>); only one adapter of a model may set it.</summary>
    public LoraBias Bias { get; init; } = LoraBias.None;

    /// <summary>
    /// Modules trained in full and saved with the adapter (<c>modules_to_save</c>; exact or <c>"."</c>-suffix names).
    /// Each gets a trainable copy per adapter, saved under the original name (e.g. <c>lm_head.weight</c>); only
    /// replaceable modules (the projections and <c>lm_head</c>) are supported.
    /// </summary>
    public IReadOnlyList<string>? ModulesToSave { get; init; }

    /// <summary>rsLoRA: <c>scaling = alpha / √r</c> instead of <c>alpha / r</c> (<c>use_rslora</c>).</summary>
    public bool UseRsLora { get; init; }

    /// <summary>How A and B start (<c>init_lora_weights</c>).</summary>
    public LoraInit Init { get; init; } = LoraInit.Default;

    /// <summary>
    /// With <see cref="LoraInit.Pissa"/>: use a randomized low-rank SVD with this many subspace iterations
    /// (<c>"pissa_niter_N"</c>) instead of the full SVD; <c>null</c> = full SVD.
    /// </summary>
    public int? PissaNiter { get; init; }

    /// <summary>DoRA: a trainable magnitude per output row rescales the adapted weight (<c>use_dora</c>).</summary>
    public bool UseDora { get; init; }

    /// <summary>
    /// The dtype of the adapter weights; default fp32 even on a bf16 base, as PEFT's autocast does. The forward
    /// casts the input to it and the sum back to the base output's dtype.
    /// </summary>
    public ScalarType AdapterDType { get; init; } = ScalarType.Float32;

    /// <summary>Seed of the random generator that initialises the adapter.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>The base model's name or path, written to <c>adapter_config.json</c> (<c>base_model_name_or_path</c>).</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>The rank of a module: the first <see cref="RankPattern"/> key that matches its name, else <see cref="R"/>.</summary>
    /// <param name="fullName">The module's full name.</param>
    /// <returns>The rank.</returns>
    public int RankFor(string fullName) => PatternKey(RankPattern.Keys, fullName) is { } key ? RankPattern[key] : R;

    /// <summary>The alpha of a module: the first <see cref="AlphaPattern"/> key that matches its name, else <see cref="Alpha"/>.</summary>
    /// <param name="fullName">The module's full name.</param>
    /// <returns>The alpha.</returns>
    public double AlphaFor(string fullName) => PatternKey(AlphaPattern.Keys, fullName) is { } key ? AlphaPattern[key] : Alpha;

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range or options contradict each other.</exception>
    public void Validate()
    {
        if (R <= 0)
        {
            throw Invalid(nameof(R), $"must be positive, got {R}.");
        }

        if (!double.IsFinite(Alpha) || Alpha <= 0)
        {
            throw Invalid(nameof(Alpha), $"must be a positive number, got {Alpha}.");
        }

        if (!(Dropout >= 0 && Dropout < 1))
        {
            throw Invalid(nameof(Dropout), $"must be in [0, 1), got {Dropout}.");
        }

        if (ExcludeModules is { IsAllLinear: true })
        {
            throw Invalid(nameof(ExcludeModules), "'all-linear' cannot be used to exclude modules; give names or a pattern.");
        }

        if (LayersToTransform is { } layers)
        {
            if (TargetModules is { IsList: false })
            {
                throw Invalid(nameof(LayersToTransform), $"only works with a list of TargetModules, not '{TargetModules}'.");
            }

            if (layers.Any(i => i < 0))
            {
                throw Invalid(nameof(LayersToTransform), $"layer indices must be 0 or more, got [{string.Join(", ", layers)}].");
            }
        }

        ValidatePattern(nameof(RankPattern), RankPattern, r => r > 0, "ranks must be positive");
        ValidatePattern(nameof(AlphaPattern), AlphaPattern, a => double.IsFinite(a) && a > 0, "alphas must be positive numbers");
        if (ModulesToSave is { } saved && saved.Any(string.IsNullOrWhiteSpace))
        {
            throw Invalid(nameof(ModulesToSave), "module names must not be empty.");
        }

        if (PissaNiter is { } niter && (Init != LoraInit.Pissa || niter < 0))
        {
            throw Invalid(nameof(PissaNiter), Init != LoraInit.Pissa ? "only applies with Init = Pissa." : $"must be 0 or more, got {niter}.");
        }

        if (AdapterDType is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16))
        {
            throw Invalid(nameof(AdapterDType), $"must be Float32, BFloat16 or Float16, got {AdapterDType}.");
        }
    }

    /// <summary>PEFT's <c>get_pattern_key</c>: the first key for which <c>(.*\.)?(key)$</c> matches from the start of the name.</summary>
    internal static string? PatternKey(IEnumerable<string> keys, string fullName) =>
        keys.FirstOrDefault(key => Regex.IsMatch(fullName, @"^(.*\.)?(" + key + ")$", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(2)));

    private static void ValidatePattern<T>(string option, IReadOnlyDictionary<string, T> pattern, Func<T, bool> valid, string rule)
    {
        foreach (var (key, value) in pattern)
        {
            if (string.IsNullOrEmpty(key))
            {
                throw Invalid(option, "keys must not be empty.");
            }

            try
            {
                _ = new Regex(key, RegexOptions.CultureInvariant);
            }
            catch (ArgumentException ex)
            {
                throw Invalid(option, $"key '{key}' is not a valid regular expression: {ex.Message}");
            }

            if (!valid(value))
            {
                throw Invalid(option, $"{rule}; '{key}' has {value}.");
            }
        }
    }

    private static InvalidOptionException Invalid(string property, string message) => new($"{nameof(LoraOptions)}.{property}", message);
}
