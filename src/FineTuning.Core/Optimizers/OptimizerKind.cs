namespace FineTuning.Core.Optimizers;

/// <summary>The optimizer the trainer builds.</summary>
public enum OptimizerKind
{
    /// <summary>AdamW with decoupled weight decay (Loshchilov and Hutter), fp32 states.</summary>
    AdamW,
}
