namespace FineTuning.Core.Strategies.PrefixTuning;

/// <summary>How the prefix encoder starts (PEFT's <c>PrefixTuningConfig.init_weights</c>).</summary>
public enum PrefixTuningInit
{
    /// <summary>
    /// PyTorch's defaults (<c>init_weights=None</c>, PEFT's default): the embedding N(0, 1), each Linear's weight and bias
    /// U(−1/√fan_in, 1/√fan_in).
    /// </summary>
    Random,

    /// <summary>
    /// <c>init_weights="zero"</c>: the last Linear (with projection) or the embedding (without) starts at zero, so every
    /// prefix key and value starts at zero.
    /// </summary>
    Zero,
}
