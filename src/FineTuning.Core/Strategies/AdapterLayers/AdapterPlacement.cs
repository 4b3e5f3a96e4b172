namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>Where bottleneck adapters sit in each decoder layer.</summary>
public enum AdapterPlacement
{
    /// <summary>
    /// Pfeiffer et al. (2020), AdapterHub's <c>seq_bn</c> (its default): one adapter after the MLP only
    /// (<c>mh_adapter = false</c>, <c>output_adapter = true</c>).
    /// </summary>
    Pfeiffer,

    /// <summary>
    /// Houlsby et al. (2019), AdapterHub's <c>double_seq_bn</c>: one adapter after the attention and one after the MLP
    /// (<c>mh_adapter = true</c>, <c>output_adapter = true</c>).
    /// </summary>
    Houlsby,
}
