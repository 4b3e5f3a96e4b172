using System.Globalization;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>
/// What every AdamW kind shares: the global gradient norm and clipping, the step count, skipping a step whose norm is
/// not finite, and the safetensors state file (keyed by parameter name, the step count and the optimizer's name in
/// its metadata). Subclasses keep the moments and apply the update to one parameter.
/// </summary>
internal abstract class AdamWOptimizerBase : IOptimizer
{
    /// <summary>The metadata key of the step count.</summary>
    protected const string StepKey = "step";

    /// <summary>The metadata key of the optimizer's name.</summary>
    protected const string OptimizerKey = "optimizer";

    private readonly NamedParameter[] parameters;

    /// <summary>Validates the options and takes the parameters.</summary>
    protected AdamWOptimizerBase(IReadOnlyList<NamedParameter> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        this.parameters = [.. parameters];
    }

    /// <inheritdoc />
    public int StepCount { get; private set; }

    /// <summary>The settings.</summary>
    protected OptimizerOptions Options { get; }

    /// <summary>The name written to the state file's metadata (<c>adamw</c>, <c>paged_adamw</c>, …).</summary>
    protected abstract string Name { get; }

    /// <summary>Whether the moments are stored as 8-bit codes (state files of 8-bit and fp32 kinds do not mix).</summary>
    protected virtual bool EightBit => false;

    /// <summary>Whether weight decay applies to a parameter: it has two or more dimensions.</summary>
    /// <param name="parameter">The parameter.</param>
    /// <returns><c>true</c> for matrices and embeddings, <c>false</c> for norm weights and biases.</returns>
    public static bool AppliesWeightDecay(Tensor parameter) => parameter.dim() >= 2;

    /// <inheritdoc />
    public double Step(double learningRate, double? maxGradNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = parameters.Select(p => p.Parameter.grad).ToArray();
        if (grads.All(g => g is null))
        {
            return 0;
        }

        // Per-parameter norms first, so that only one fp32 copy of a bf16 gradient exists at a time.
        var norms = grads.OfType<Tensor>().Select(Norm).ToList();
        var norm = stack(norms).norm().item<float>();
        if (!float.IsFinite(norm))
        {
            return norm;
        }

        var coefficient = maxGradNorm is { } max && max / (norm + 1e-6) < 1 ? max / (norm + 1e-6) : 1.0;
        StepCount++;
        var step = new AdamWStep(learningRate, Options, StepCount);
        for (var i = 0; i < grads.Length; i++)
        {
            if (grads[i] is { } grad)
            {
                using var parameterScope = NewDisposeScope();
                Update(i, grad, coefficient, step);
            }
        }

        return norm;
    }

    /// <inheritdoc />
    public void ZeroGrad()
    {
        foreach (var parameter in parameters)
        {
            parameter.Parameter.grad = null;
        }
    }

    /// <inheritdoc />
    public void Save(string path)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            [OptimizerKey] = Name,
            [StepKey] = StepCount.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var (key, value) in Metadata())
        {
            metadata[key] = value;
        }

        SafetensorsWriter.Write(path, State(), metadata);
    }

    /// <inheritdoc />
    public void Load(string path)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        using var reader = new SafetensorsReader(path);
        if (!reader.Metadata.TryGetValue(StepKey, out var stepText) || !int.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out var step))
        {
            throw new CheckpointFormatException($"Optimizer state '{path}' has no '{StepKey}' in its metadata.", path);
        }

        var saved = reader.Metadata.GetValueOrDefault(OptimizerKey, "adamw");
        if (saved.EndsWith("_8bit", StringComparison.Ordinal) != EightBit)
        {
            throw new CheckpointFormatException($"Optimizer state '{path}' was written by '{saved}', whose moments are stored differently from '{Name}''s; resume with the same optimizer kind.", path);
        }

        LoadState(reader, path);
        StepCount = step;
    }

    /// <inheritdoc />
    public abstract void Dispose();

    /// <summary>The parameters, in order.</summary>
    protected IReadOnlyList<NamedParameter> Parameters => parameters;

    /// <summary>
    /// The gradient in fp32 (itself when it is fp32, so clipping is in place as in PyTorch), multiplied by
    /// <paramref name="coefficient"/> when it is below 1.
    /// </summary>
    protected static Tensor Clipped(Tensor grad, double coefficient)
    {
        var g32 = grad.to(ScalarType.Float32);
        return coefficient < 1 ? g32.mul_(coefficient) : g32;
    }

    /// <summary>Applies the update to parameter <paramref name="index"/> (inside a dispose scope of its own, with gradients off).</summary>
    /// <param name="index">The parameter's index.</param>
    /// <param name="grad">Its gradient, not yet clipped.</param>
    /// <param name="coefficient">The clipping factor (1 for none).</param>
    /// <param name="step">The step's scalars.</param>
    protected abstract void Update(int index, Tensor grad, double coefficient, in AdamWStep step);

    /// <summary>Name/tensor pairs to save (temporaries may be created in the caller's scope).</summary>
    protected abstract IEnumerable<KeyValuePair<string, Tensor>> State();

    /// <summary>Extra metadata to save.</summary>
    protected virtual IEnumerable<KeyValuePair<string, string>> Metadata() => [];

    /// <summary>Restores the moments (and master copies) from a state file.</summary>
    protected abstract void LoadState(SafetensorsReader reader, string path);

    private static Tensor Norm(Tensor grad)
    {
        using var scope = NewDisposeScope();
        return grad.to(ScalarType.Float32).norm().MoveToOuterDisposeScope();
    }
}
