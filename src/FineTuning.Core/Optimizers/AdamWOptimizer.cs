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
internal sealed class AdamWOptimizer : AdamWOptimizerBase
{
    private readonly Slot[] slots;

    /// <summary>Creates the optimizer and its zeroed state.</summary>
    /// <param name="parameters">The parameters to train, with unique names.</param>
    /// <param name="options">Learning-rate-independent settings (betas, eps, weight decay).</param>
    public AdamWOptimizer(IReadOnlyList<NamedParameter> parameters, OptimizerOptions options)
        : base(parameters, options)
    {
        slots = Parameters.Select(p => new Slot(p.Name, p.Parameter)).ToArray();
    }

    /// <summary>The names of the parameters weight decay applies to.</summary>
    public IReadOnlyList<string> DecayedParameterNames => slots.Where(s => s.Decay).Select(s => s.Name).ToList();

    /// <summary>The names of the parameters that have an fp32 master copy.</summary>
    public IReadOnlyList<string> MasterCopyNames => slots.Where(s => s.HasMaster).Select(s => s.Name).ToList();

    /// <inheritdoc />
    protected override string Name => "adamw";

    /// <summary>The fp32 master copy of a parameter (the parameter itself when it is fp32).</summary>
    /// <param name="name">The parameter's name.</param>
    /// <returns>The tensor the update is applied to.</returns>
    public Tensor Master(string name) => slots.Single(s => s.Name == name).Master;

    /// <inheritdoc />
    public override void Dispose()
    {
        foreach (var slot in slots)
        {
            slot.Dispose();
        }
    }

    /// <inheritdoc />
    protected override void Update(int index, Tensor grad, double coefficient, in AdamWStep step)
    {
        var slot = slots[index];
        AdamWUpdate.Apply(slot.Master, slot.ExpAvg, slot.ExpAvgSq, Clipped(grad, coefficient), slot.Decay, step);
        if (slot.HasMaster)
        {
            slot.Parameter.copy_(slot.Master);
        }
    }

    /// <inheritdoc />
    protected override IEnumerable<KeyValuePair<string, Tensor>> State()
    {
        foreach (var slot in slots)
        {
            yield return new(slot.Name + ".exp_avg", slot.ExpAvg);
            yield return new(slot.Name + ".exp_avg_sq", slot.ExpAvgSq);
            if (slot.HasMaster)
            {
                yield return new(slot.Name + ".master", slot.Master);
            }
        }
    }

    /// <inheritdoc />
    protected override void LoadState(SafetensorsReader reader, string path)
    {
        foreach (var slot in slots)
        {
            reader.ReadInto(slot.Name + ".exp_avg", slot.ExpAvg);
            reader.ReadInto(slot.Name + ".exp_avg_sq", slot.ExpAvgSq);
            if (slot.HasMaster)
            {
                reader.ReadInto(slot.Name + ".master", slot.Master);
            }
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
