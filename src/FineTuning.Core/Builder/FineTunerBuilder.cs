using FineTuning.Core.Data;
using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.AdapterLayers;
using FineTuning.Core.Strategies.FullSft;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.Opd;
using FineTuning.Core.Strategies.QLora;
using FineTuning.Core.Strategies.PrefixTuning;
using FineTuning.Core.Strategies.PromptTuning;
using FineTuning.Core.Tokenization;
using FineTuning.Core.Training;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static TorchSharp.torch;

namespace FineTuning.Core;

/// <summary>
/// Composes a fine-tuning run: a model, a tokenizer, one method (strategy), the optimizer, the schedule and
/// the loop settings. Nothing is loaded or checked until <see cref="Build"/> (or <see cref="Train(IReadOnlyList{TrainingExample}, IReadOnlyList{TrainingExample}?, IProgress{TrainingProgress}?, CancellationToken)"/>),
/// which validates every option and combination and throws <see cref="InvalidOptionException"/> naming the one at fault.
/// </summary>
/// <example><code>
/// var result = FineTuner.Create()
///     .WithModel("models/tiny")
///     .WithLoRA(r: 16, alpha: 32)
///     .WithOptimizer(o => o with { LearningRate = 2e-4 })
///     .WithSchedule(ScheduleKind.Cosine, warmupSteps: 10)
///     .Train("train.jsonl", "eval.jsonl", progress, cancellationToken);
/// </code></example>
public sealed class FineTunerBuilder
{
    private string? modelDirectory;
    private CausalLanguageModel? modelInstance;
    private Device? device;
    private ScalarType? dtype;
    private ITextTokenizer? tokenizer;
    private string? tokenizerDirectory;
    private readonly List<(string Name, Func<IParameterStrategy> Create)> strategies = [];
    private TrainingOptions training = TrainingOptions.Default;
    private ILogger logger = NullLogger.Instance;

    internal FineTunerBuilder()
    {
    }

    /// <summary>Uses the Hugging Face model folder (config.json, safetensors, tokenizer files) as the base.</summary>
    /// <param name="directory">The folder.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithModel(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        modelDirectory = directory;
        modelInstance = null;
        return this;
    }

    /// <summary>Uses a model already in memory as the base (the caller keeps ownership).</summary>
    /// <param name="model">The model.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithModel(CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        modelInstance = model;
        modelDirectory = null;
        return this;
    }

    /// <summary>Where a model folder is loaded (<c>cpu</c>, <c>cuda:0</c>…); default CPU.</summary>
    /// <param name="device">The device name.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithDevice(string device)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(device);
        this.device = TorchSharp.torch.device(device);
        return this;
    }

    /// <summary>Where a model folder is loaded; default CPU.</summary>
    /// <param name="device">The device.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithDevice(Device device)
    {
        this.device = device ?? throw new ArgumentNullException(nameof(device));
        return this;
    }

    /// <summary>The dtype a model folder is loaded in (bf16 compute is the usual choice); default the config's.</summary>
    /// <param name="dtype">Float32, BFloat16 or Float16.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithDType(ScalarType dtype)
    {
        this.dtype = dtype;
        return this;
    }

    /// <summary>Uses this tokenizer instead of the model folder's.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithTokenizer(ITextTokenizer tokenizer)
    {
        this.tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));
        tokenizerDirectory = null;
        return this;
    }

    /// <summary>Loads the tokenizer from a folder (tokenizer.json or tokenizer.model, tokenizer_config.json).</summary>
    /// <param name="directory">The folder.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithTokenizer(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        tokenizerDirectory = directory;
        tokenizer = null;
        return this;
    }

    /// <summary>Uses any strategy (including your own) as the method.</summary>
    /// <param name="strategy">Creates the strategy; called once per <see cref="Build"/>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithStrategy(Func<IParameterStrategy> strategy)
    {
        ArgumentNullException.ThrowIfNull(strategy);
        return AddStrategy("WithStrategy", strategy);
    }

    /// <summary>Full fine-tuning: every parameter trains.</summary>
    /// <param name="options">Which parts stay frozen; none by default.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithFullSft(FullSftOptions? options = null)
    {
        var chosen = options ?? FullSftOptions.Default;
        return AddStrategy(nameof(WithFullSft), () => new FullSftStrategy(chosen));
    }

    /// <summary>
    /// LoRA with PEFT's semantics. <paramref name="alpha"/> defaults to 2·<paramref name="r"/> (scaling 2, the usual rule of thumb; PEFT's
    /// default is alpha 8 with r 8); <paramref name="targets"/> takes module names (exact or <c>.</c>-suffix),
    /// <c>["all-linear"]</c>, or is <c>null</c> for the family's default (<c>q_proj</c>, <c>v_proj</c>).
    /// </summary>
    /// <param name="r">The rank.</param>
    /// <param name="alpha">lora_alpha; the update is scaled by alpha/r (alpha/√r with rsLoRA).</param>
    /// <param name="targets">Which projections get adapters.</param>
    /// <param name="dropout">Dropout on the adapter input.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { UseDora = true }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithLoRA(int r = 8, double? alpha = null, IReadOnlyList<string>? targets = null, double dropout = 0, Func<LoraOptions, LoraOptions>? configure = null)
    {
        var options = new LoraOptions { R = r, Alpha = alpha ?? 2 * r, Dropout = dropout, TargetModules = Targets(targets) };
        return WithLoRA(configure is null ? options : configure(options));
    }

    /// <summary>LoRA with the given options (all of PEFT's LoraConfig that this library supports).</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithLoRA(LoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithLoRA), () => new LoraStrategy(options));
    }

    /// <summary>
    /// QLoRA: the base's projections are quantized to 4 bits and frozen, LoRA adapters (fp32) train on top. Defaults:
    /// r 16, alpha 2·r, every projection (<c>all-linear</c>, the QLoRA paper's finding), NF4 with double quantization,
    /// blocks of 64, bf16 compute. A base loaded from a "-bnb-4bit" folder is used as it is.
    /// </summary>
    /// <param name="r">The rank.</param>
    /// <param name="alpha">lora_alpha; default 2·<paramref name="r"/>.</param>
    /// <param name="targets">Which projections get adapters: names (exact or <c>.</c>-suffix) or <c>["all-linear"]</c>; <c>null</c> = all-linear.</param>
    /// <param name="dropout">Dropout on the adapter input.</param>
    /// <param name="type">The 4-bit data type.</param>
    /// <param name="doubleQuant">Quantize the per-block scales to 8 bits too.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { Quantization = o.Quantization with { BlockSize = 128 } }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithQLoRA(int r = 16, double? alpha = null, IReadOnlyList<string>? targets = null, double dropout = 0, QuantizationType type = QuantizationType.NF4, bool doubleQuant = true, Func<QLoraOptions, QLoraOptions>? configure = null)
    {
        var options = new QLoraOptions
        {
            Lora = QLoraOptions.Default.Lora with { R = r, Alpha = alpha ?? 2 * r, Dropout = dropout, TargetModules = Targets(targets) ?? LoraTargetModules.AllLinear },
            Quantization = QuantizationOptions.Default with { Type = type, DoubleQuant = doubleQuant },
        };
        return WithQLoRA(configure is null ? options : configure(options));
    }

    /// <summary>QLoRA with the given options.</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithQLoRA(QLoraOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithQLoRA), () => new QLoraStrategy(options));
    }

    /// <summary>
    /// QLoRA as the paper ran it: <see cref="QLoraOptions.PaperPreset"/> (r 64, alpha 16, dropout 0.05, all-linear,
    /// NF4 + double quant, bf16 compute) and <see cref="QLoraPreset.PaperTraining"/> (paged AdamW, learning rate 2e-4,
    /// constant schedule with 3 % warmup, gradient norm clipped to 0.3). Call it before other optimizer or schedule
    /// changes you want to keep.
    /// </summary>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithQLoRAPaperPreset()
    {
        training = QLoraPreset.PaperTraining(training);
        return AddStrategy(nameof(WithQLoRAPaperPreset), () => new QLoraStrategy(QLoraOptions.PaperPreset));
    }

    /// <summary>
    /// Bottleneck adapters with AdapterHub's semantics: after the MLP of every layer (<see cref="AdapterPlacement.Pfeiffer"/>,
    /// the default) or after the attention and the MLP (<see cref="AdapterPlacement.Houlsby"/>), each
    /// <c>x + up(act(down(x)))</c> with a bottleneck of hidden / <paramref name="reductionFactor"/>; identity init, fp32
    /// adapters, frozen base. Saved as an AdapterHub folder; cannot be merged.
    /// </summary>
    /// <param name="reductionFactor">hidden size / bottleneck size.</param>
    /// <param name="placement">Where the adapters sit.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { NonLinearity = AdapterNonLinearity.Gelu }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithAdapters(double reductionFactor = 16, AdapterPlacement placement = AdapterPlacement.Pfeiffer, Func<AdapterLayersOptions, AdapterLayersOptions>? configure = null)
    {
        var options = new AdapterLayersOptions { ReductionFactor = reductionFactor, Placement = placement };
        return WithAdapters(configure is null ? options : configure(options));
    }

    /// <summary>Bottleneck adapters with the given options.</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithAdapters(AdapterLayersOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithAdapters), () => new AdapterLayersStrategy(options));
    }

    /// <summary>
    /// OPD — Optimal Parameter Decoupling (a library-defined method; <b>not on-policy distillation</b>): scores every
    /// projection weight with Fisher estimates on the task data and on <paramref name="generalData"/>, protects a core set,
    /// trains only the exact optimum of the surrogate Σ(G − β·H) under <paramref name="budget"/>, anchored to the base, and
    /// saves a sparse delta with an explanation report. Selection happens when training starts, on the training data.
    /// </summary>
    /// <param name="generalData">General calibration examples (what the base must keep doing).</param>
    /// <param name="budget">Trainable scalars: <c>OpdBudget.Count(n)</c> or <c>OpdBudget.Of(fraction)</c>; default 1 % of the selectable parameters.</param>
    /// <param name="granularity">Elements (default, with row quotas), whole tensors or whole layers.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { AnchorStrength = 10 }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithOpd(IReadOnlyList<TrainingExample> generalData, OpdBudget? budget = null, OpdGranularity granularity = OpdGranularity.Element, Func<OpdOptions, OpdOptions>? configure = null)
    {
        var options = OpdOptions.Default with { GeneralData = generalData, Budget = budget ?? OpdOptions.Default.Budget, Granularity = granularity };
        return WithOpd(configure is null ? options : configure(options));
    }

    /// <summary>OPD (Optimal Parameter Decoupling, not on-policy distillation) with the given options.</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithOpd(OpdOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithOpd), () => new OpdStrategy(options));
    }

    /// <summary>
    /// Prompt tuning with PEFT's semantics: <paramref name="virtualTokens"/> trainable embeddings prepended to every input,
    /// the base frozen. With <paramref name="initText"/> the virtual tokens start as that text's token embeddings
    /// (PEFT's TEXT init; repeated or cut to fit), otherwise as N(0, 1) (RANDOM). Packing cannot be combined with it.
    /// </summary>
    /// <param name="virtualTokens">T, the number of virtual tokens.</param>
    /// <param name="initText">The text for TEXT init, or <c>null</c> for random init.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { Init = PromptTuningInit.SampleVocab }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithPromptTuning(int virtualTokens = 20, string? initText = null, Func<PromptTuningOptions, PromptTuningOptions>? configure = null)
    {
        var options = new PromptTuningOptions { NumVirtualTokens = virtualTokens, Init = initText is null ? PromptTuningInit.Random : PromptTuningInit.Text, InitText = initText };
        return WithPromptTuning(configure is null ? options : configure(options));
    }

    /// <summary>Prompt tuning with the given options; a TEXT init without <see cref="PromptTuningOptions.TokenizerNameOrPath"/> records the tokenizer's folder.</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithPromptTuning(PromptTuningOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithPromptTuning), () => new PromptTuningStrategy(options.Init == PromptTuningInit.Text && options.TokenizerNameOrPath is null
            ? options with { TokenizerNameOrPath = tokenizerDirectory ?? modelDirectory }
            : options));
    }

    /// <summary>
    /// Prefix tuning with PEFT's semantics: every attention layer gets <paramref name="virtualTokens"/> trainable key/value
    /// positions (kv_heads × head_dim wide), the base frozen. With <paramref name="prefixProjection"/> they are produced
    /// by an MLP while training (only its output is saved).
    /// </summary>
    /// <param name="virtualTokens">T, the number of virtual tokens.</param>
    /// <param name="prefixProjection">Reparameterize the prefix through Embedding → Linear → Tanh → Linear.</param>
    /// <param name="encoderHiddenSize">The MLP's hidden width; <c>null</c> = kv_heads × head_dim.</param>
    /// <param name="configure">Further changes, e.g. <c>o =&gt; o with { Init = PrefixTuningInit.Zero }</c>.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithPrefixTuning(int virtualTokens = 20, bool prefixProjection = false, int? encoderHiddenSize = null, Func<PrefixTuningOptions, PrefixTuningOptions>? configure = null)
    {
        var options = new PrefixTuningOptions { NumVirtualTokens = virtualTokens, PrefixProjection = prefixProjection, EncoderHiddenSize = encoderHiddenSize };
        return WithPrefixTuning(configure is null ? options : configure(options));
    }

    /// <summary>Prefix tuning with the given options.</summary>
    /// <param name="options">The options.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithPrefixTuning(PrefixTuningOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return AddStrategy(nameof(WithPrefixTuning), () => new PrefixTuningStrategy(options));
    }

    /// <summary>Replaces the optimizer settings.</summary>
    /// <param name="options">The settings.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithOptimizer(OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        training = training with { Optimizer = options };
        return this;
    }

    /// <summary>Changes the optimizer settings, e.g. <c>o =&gt; o with { LearningRate = 1e-4 }</c>.</summary>
    /// <param name="configure">Returns the new settings from the current ones.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithOptimizer(Func<OptimizerOptions, OptimizerOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        return WithOptimizer(configure(training.Optimizer));
    }

    /// <summary>Replaces the learning-rate schedule.</summary>
    /// <param name="options">The schedule.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithSchedule(ScheduleOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        training = training with { Schedule = options };
        return this;
    }

    /// <summary>Sets the schedule's shape and warmup.</summary>
    /// <param name="kind">Constant, linear or cosine after warmup.</param>
    /// <param name="warmupSteps">Linear warmup length in optimizer steps.</param>
    /// <param name="minLearningRateRatio">The final learning rate as a share of the peak.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithSchedule(ScheduleKind kind, int warmupSteps = 0, double minLearningRateRatio = 0) =>
        WithSchedule(new ScheduleOptions { Kind = kind, WarmupSteps = warmupSteps, MinLearningRateRatio = minLearningRateRatio });

    /// <summary>Replaces the loop settings (batch size, epochs, checkpoints…), keeping the optimizer and schedule set so far.</summary>
    /// <param name="options">The settings.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithTraining(TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        training = options with { Optimizer = training.Optimizer, Schedule = training.Schedule };
        return this;
    }

    /// <summary>Changes the loop settings, e.g. <c>t =&gt; t with { BatchSize = 8, Epochs = 3 }</c>.</summary>
    /// <param name="configure">Returns the new settings from the current ones.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithTraining(Func<TrainingOptions, TrainingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        training = configure(training) ?? throw new InvalidOptionException(nameof(WithTraining), "the callback returned null.");
        return this;
    }

    /// <summary>Writes checkpoints and the result (an adapter folder, or a full model for full SFT) here.</summary>
    /// <param name="directory">The output folder.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithOutput(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        training = training with { OutputDirectory = directory };
        return this;
    }

    /// <summary>Logs through this logger (default: none).</summary>
    /// <param name="logger">The logger.</param>
    /// <returns>This builder.</returns>
    public FineTunerBuilder WithLogger(ILogger logger)
    {
        this.logger = logger ?? throw new ArgumentNullException(nameof(logger));
        return this;
    }

    /// <summary>
    /// Validates every option, loads the model and tokenizer and applies the method. Throws
    /// <see cref="InvalidOptionException"/> naming the option when a value or a combination is invalid.
    /// </summary>
    /// <returns>The tuner, ready to train.</returns>
    public FineTuner Build()
    {
        training.Validate();
        if (modelDirectory is null && modelInstance is null)
        {
            throw new InvalidOptionException(nameof(WithModel), "no model given; call WithModel(directory) or WithModel(model).");
        }

        if (strategies.Count > 1)
        {
            throw new InvalidOptionException(strategies[1].Name, $"only one method per tuner, but both {strategies[0].Name} and {strategies[1].Name} were called.");
        }

        if (modelDirectory is not null && !File.Exists(Path.Combine(modelDirectory, HuggingFaceModel.ConfigFileName)))
        {
            throw new InvalidOptionException(nameof(WithModel), $"'{modelDirectory}' holds no {HuggingFaceModel.ConfigFileName}.");
        }

        var tokenizerFolder = tokenizerDirectory ?? modelDirectory;
        var chosenTokenizer = tokenizer ?? (tokenizerFolder is null ? null : TokenizerLoader.Load(tokenizerFolder));
        if (chosenTokenizer is null)
        {
            throw new InvalidOptionException(nameof(WithTokenizer), "a model given as an object needs WithTokenizer(…).");
        }

        var strategy = strategies.Count == 0 ? new FullSftStrategy() : strategies[0].Create();
        var model = modelInstance ?? HuggingFaceModel.Load(modelDirectory!, new ModelLoadOptions { Device = device, DType = dtype });
        try
        {
            if (chosenTokenizer.VocabularySize > model.Config.VocabSize)
            {
                throw new InvalidOptionException(nameof(WithTokenizer), $"the tokenizer has {chosenTokenizer.VocabularySize} tokens but the model's vocab_size is {model.Config.VocabSize}.");
            }

            strategy.Apply(model, new StrategyContext { Tokenizer = chosenTokenizer, Logger = logger });
            return new FineTuner(model, modelDirectory, chosenTokenizer, strategy, training, logger);
        }
        catch
        {
            if (modelInstance is null)
            {
                model.Dispose();
            }

            throw;
        }
    }

    /// <summary>Builds the tuner and trains it (see <see cref="FineTuner.Train(IReadOnlyList{TrainingExample}, IReadOnlyList{TrainingExample}?, IProgress{TrainingProgress}?, CancellationToken)"/>).</summary>
    /// <param name="trainData">Training examples.</param>
    /// <param name="evalData">Validation examples, or <c>null</c>.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops training after the current micro-batch.</param>
    /// <returns>The result; its <see cref="FineTuneResult.Tuner"/> keeps the trained model.</returns>
    public FineTuneResult Train(IReadOnlyList<TrainingExample> trainData, IReadOnlyList<TrainingExample>? evalData = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Build().Train(trainData, evalData, progress, cancellationToken);

    /// <summary>Builds the tuner and trains it on JSONL files (text, prompt/completion or chat lines).</summary>
    /// <param name="trainPath">The training file.</param>
    /// <param name="evalPath">The validation file, or <c>null</c>.</param>
    /// <param name="progress">Receives progress reports.</param>
    /// <param name="cancellationToken">Stops training after the current micro-batch.</param>
    /// <returns>The result; its <see cref="FineTuneResult.Tuner"/> keeps the trained model.</returns>
    public FineTuneResult Train(string trainPath, string? evalPath = null, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default) =>
        Build().Train(trainPath, evalPath, progress, cancellationToken);

    /// <summary>The builder's target list: <c>null</c> stays null, <c>["all-linear"]</c> is the shorthand, anything else names modules.</summary>
    private static LoraTargetModules? Targets(IReadOnlyList<string>? targets) => targets switch
    {
        null => null,
        [var only] when string.Equals(only, LoraTargetModules.AllLinearShorthand, StringComparison.OrdinalIgnoreCase) => LoraTargetModules.AllLinear,
        _ => LoraTargetModules.FromNames(targets),
    };

    private FineTunerBuilder AddStrategy(string name, Func<IParameterStrategy> create)
    {
        strategies.Add((name, create));
        return this;
    }
}
