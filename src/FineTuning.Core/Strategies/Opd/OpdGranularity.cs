namespace FineTuning.Core.Strategies.Opd;

/// <summary>What OPD (Optimal Parameter Decoupling — not on-policy distillation) selects under its budget.</summary>
public enum OpdGranularity
{
    /// <summary>
    /// Single weights: the exact top-B by score, by default with per-row quotas (<see cref="OpdOptions.RowQuotas"/>)
    /// so the budget spreads over every output neuron instead of clustering in a few rows.
    /// </summary>
    Element,

    /// <summary>Whole tensors (a projection's weight or bias, minus its core elements), chosen by an exact 0/1 knapsack.</summary>
    Tensor,

    /// <summary>Whole decoder layers (all their selectable tensors, minus core elements), chosen by an exact 0/1 knapsack.</summary>
    Layer,
}
