using System.Globalization;
using FineTuning.Core.IO;
using FineTuning.Core.Strategies;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>
/// AdamW (PyTorch's update rule) over named parameters, with its state always in fp32: parameters stored in bf16 or
/// fp16 get an fp32 master copy that the update is applied to, and the rounded result is copied back into the model.
/// Weight decay applies to parameters with two or more dimensions only (matrices and embeddings), never to 1-D ones
/// (norm weights, biases). Gradients are clipped by their global L2 norm before the update.
/// </summary>
/// <remarks>
/// The state is saved as a safetensors file keyed by parameter name (<c>{name}.exp_avg</c>, <c>{name}.exp_avg_sq</c>,
/// <c>{name}.master</c>) with the step count in its metadata, so it does not depend on parameter handles.
/// </remarks>
internal sealed class AdamWOptimizer : IDisposable
{
    private const string StepKey = "step";
    private readonly Slot[] slots;
    private readonly OptimizerOptions options;

    /// <summary>Creates the optimizer and its zeroed state.</summary>
    /// <param name="parameters">The parameters to train, with unique names.</param>
    /// <param name="options">Learning-rate-independent settings (betas, eps, weight decay).</param>
    public AdamWOptimizer(IReadOnlyList<NamedParameter> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options;
        slots = parameters.Select(p => new Slot(p.Name, p.Parameter)).ToArray();
    }

    /// <summary>Updates applied so far (Adam's bias-correction step).</summary>
    public int StepCount { get; private set; }

    /// <summary>The names of the parameters weight decay applies to.</summary>
    public IReadOnlyList<string> DecayedParameterNames => slots.Where(s => s.Decay).Select(s => s.Name).ToList();

    /// <summary>The names of the parameters that have an fp32 master copy.</summary>
    public IReadOnlyList<string> MasterCopyNames => slots.Where(s => s.HasMaster).Select(s => s.Name).ToList();

    /// <summary>Whether weight decay applies to a parameter: it has two or more dimensions.</summary>
    /// <param name="parameter">The parameter.</param>
    /// <returns><c>true</c> for matrices and embeddings, <c>false</c> for norm weights and biases.</returns>
    public static bool AppliesWeightDecay(Tensor parameter) => parameter.dim() >= 2;

    /// <summary>The fp32 master copy of a parameter (the parameter itself when it is fp32).</summary>
    /// <param name="name">The parameter's name.</param>
    /// <returns>The tensor the update is applied to.</returns>
    public Tensor Master(string name) => slots.Single(s => s.Name == name).Master;

    /// <summary>
    /// Clips the gradients to <paramref name="maxGradNorm"/> and applies one update with <paramref name="learningRate"/>.
    /// Parameters without a gradient are left alone. When the gradient norm is not finite nothing changes and the
    /// step is not counted.
    /// </summary>
    /// <param name="learningRate">This step's learning rate.</param>
    /// <param name="maxGradNorm">The global L2 norm to clip to; <c>null</c> does not clip.</param>
    /// <returns>The global gradient L2 norm before clipping (0 when no parameter has a gradient).</returns>
    public double Step(double learningRate, double? maxGradNorm)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var grads = slots.Select(s => s.Parameter.grad).ToArray();
        if (grads.All(g => g is null))
        {
            return 0;
        }

        // Per-parameter norms first, so that only one fp32 copy of a bf16 gradient exists at a time.
        var norms = grads.OfType<Tensor>().Select(g => WithFp32(g, g32 => g32.norm())).ToList();
        var norm = stack(norms).norm().item<float>();
        if (!float.IsFinite(norm))
        {
            return norm;
        }

        var coefficient = maxGradNorm is { } max && max / (norm + 1e-6) < 1 ? max / (norm + 1e-6) : 1.0;
        StepCount++;
        var stepSize = learningRate / (1 - Math.Pow(options.Beta1, StepCount));
        var secondCorrectionRoot = Math.Sqrt(1 - Math.Pow(options.Beta2, StepCount));
        for (var i = 0; i < slots.Length; i++)
        {
            if (grads[i] is not { } grad)
            {
                continue;
            }

            var slot = slots[i];
            WithFp32(grad, g32 =>
            {
                if (coefficient < 1)
                {
                    g32.mul_(coefficient);
                }

                if (slot.Decay && options.WeightDecay > 0)
                {
                    slot.Master.mul_(1 - (learningRate * options.WeightDecay));
                }

                slot.ExpAvg.lerp_(g32, 1 - options.Beta1);
                slot.ExpAvgSq.mul_(options.Beta2).addcmul_(g32, g32, value: 1 - options.Beta2);
                var denominator = (slot.ExpAvgSq.sqrt() / secondCorrectionRoot).add_(options.Epsilon);
                slot.Master.addcdiv_(slot.ExpAvg, denominator, value: -stepSize);
                if (slot.HasMaster)
                {
                    slot.Parameter.copy_(slot.Master);
                }

                return slot.Master;
            });
        }

        return norm;
    }

    /// <summary>
    /// Runs <paramref name="action"/> on the gradient in fp32 (itself when it is fp32, so clipping is in place as in
    /// PyTorch) inside its own dispose scope; the returned tensor is moved to the caller's scope.
    /// </summary>
    private static Tensor WithFp32(Tensor grad, Func<Tensor, Tensor> action)
    {
        using var scope = NewDisposeScope();
        return action(grad.to(ScalarType.Float32)).alias().MoveToOuterDisposeScope();
    }

    /// <summary>Drops every gradient (sets it to none, freeing its memory until the next backward).</summary>
    public void ZeroGrad()
    {
        foreach (var slot in slots)
        {
            slot.Parameter.grad = null;
        }
    }

    /// <summary>Writes the state (moments, master copies, step count) to a safetensors file, atomically.</summary>
    /// <param name="path">The file.</param>
    public void Save(string path)
    {
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var slot in slots)
        {
            tensors.Add(new(slot.Name + ".exp_avg", slot.ExpAvg));
            tensors.Add(new(slot.Name + ".exp_avg_sq", slot.ExpAvgSq));
            if (slot.HasMaster)
            {
                tensors.Add(new(slot.Name + ".master", slot.Master));
            }
        }

        var metadata = new Dictionary<string, string>
        {
            ["format"] = "pt",
            ["optimizer"] = "adamw",
            [StepKey] = StepCount.ToString(CultureInfo.InvariantCulture),
        };
        SafetensorsWriter.Write(path, tensors, metadata);
    }

    /// <summary>Restores state written by <see cref="Save"/> for the same parameters (master copies are loaded too).</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="CheckpointFormatException">A tensor is missing or has another shape, or the step count is missing.</exception>
    public void Load(string path)
    {
        using var reader = new SafetensorsReader(path);
        if (!reader.Metadata.TryGetValue(StepKey, out var stepText) || !int.TryParse(stepText, NumberStyles.None, CultureInfo.InvariantCulture, out var step))
        {
            throw new CheckpointFormatException($"Optimizer state '{path}' has no '{StepKey}' in its metadata.", path);
        }

        foreach (var slot in slots)
        {
            reader.ReadInto(slot.Name + ".exp_avg", slot.ExpAvg);
            reader.ReadInto(slot.Name + ".exp_avg_sq", slot.ExpAvgSq);
            if (slot.HasMaster)
            {
                reader.ReadInto(slot.Name + ".master", slot.Master);
            }
        }

        StepCount = step;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var slot in slots)
        {
            slot.Dispose();
        }
    }

    private sealed class Slot : IDisposable
    {
        public Slot(string name, Parameter parameter)
        {
            Name = name;
            Parameter = parameter;
            Decay = AppliesWeightDecay(parameter);
            HasMaster = parameter.dtype != ScalarType.Float32;
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Master = HasMaster ? parameter.detach().to(ScalarType.Float32).clone().DetachFromDisposeScope() : parameter;
            ExpAvg = zeros_like(Master).DetachFromDisposeScope();
            ExpAvgSq = zeros_like(Master).DetachFromDisposeScope();
        }

        public string Name { get; }

        public Parameter Parameter { get; }

        public bool Decay { get; }

        public bool HasMaster { get; }

        public Tensor Master { get; }

        public Tensor ExpAvg { get; }

        public Tensor ExpAvgSq { get; }

        public void Dispose()
        {
            ExpAvg.Dispose();
            ExpAvgSq.Dispose();
            if (HasMaster)
            {
                Master.Dispose();
            }
        }
    }
}
