namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>The activation between the down- and up-projection (AdapterHub's <c>non_linearity</c>, resolved by transformers' <c>get_activation</c>).</summary>
public enum AdapterNonLinearity
{
    /// <summary><c>relu</c>: max(0, x). AdapterHub's default for the Pfeiffer placement.</summary>
    Relu,

    /// <summary><c>swish</c> (also spelled <c>silu</c>): x·sigmoid(x). AdapterHub's default for the Houlsby placement.</summary>
    Swish,

    /// <summary><c>gelu</c>: the exact, erf-based GELU (transformers' <c>GELUActivation</c>).</summary>
    Gelu,

    /// <summary><c>tanh</c>.</summary>
    Tanh,
}
