namespace FineTuning.Core.Optimizers;

/// <summary>Optimizer settings. Weight decay never applies to norms and biases.</summary>
public sealed record OptimizerOptions
{
    /// <summary>The defaults: AdamW, learning rate 2e-4, betas (0.9, 0.999), eps 1e-8, no weight decay.</summary>
    public static OptimizerOptions Default { get; } = new();

    /// <summary>Which optimizer.</summary>
    public OptimizerKind Kind { get; init; } = OptimizerKind.AdamW;

    /// <summary>Peak learning rate (LoRA commonly 1e-4…3e-4; full fine-tuning 1e-5…5e-5).</summary>
    public double LearningRate { get; init; } = 2e-4;

    /// <summary>Adam's β1.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>Adam's β2.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>Adam's ε.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Decoupled weight decay for matrices (not for norm weights or biases).</summary>
    public double WeightDecay { get; init; }

    /// <summary>Checks every value.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range.</exception>
    public void Validate()
    {
        const string prefix = nameof(OptimizerOptions) + ".";
        if (!(LearningRate > 0) || double.IsInfinity(LearningRate))
        {
            throw new InvalidOptionException(prefix + nameof(LearningRate), $"must be a positive number, got {LearningRate}.");
        }

        if (Beta1 is < 0 or >= 1 || double.IsNaN(Beta1))
        {
            throw new InvalidOptionException(prefix + nameof(Beta1), $"must be in [0, 1), got {Beta1}.");
        }

        if (Beta2 is < 0 or >= 1 || double.IsNaN(Beta2))
        {
            throw new InvalidOptionException(prefix + nameof(Beta2), $"must be in [0, 1), got {Beta2}.");
        }

        if (!(Epsilon > 0))
        {
            throw new InvalidOptionException(prefix + nameof(Epsilon), $"must be positive, got {Epsilon}.");
        }

        if (!(WeightDecay >= 0) || double.IsInfinity(WeightDecay))
        {
            throw new InvalidOptionException(prefix + nameof(WeightDecay), $"must be 0 or more, got {WeightDecay}.");
        }
    }
}
