namespace FineTuning.Core.Strategies.AdapterLayers;

/// <summary>How a new adapter's weights start (AdapterHub's <c>init_weights</c>).</summary>
public enum AdapterInit
{
    /// <summary>
    /// AdapterHub's <c>mam_adapter</c>: down-projection weight kaiming_uniform(a = √5), its bias zero, up-projection
    /// weight and bias zero — every adapter is exactly the identity at the start. This library's default.
    /// </summary>
    Identity,

    /// <summary>AdapterHub's <c>bert</c> (its default): every weight N(0, 0.02²), biases zero; the adapter is not the identity at the start.</summary>
    Bert,

    /// <summary>AdapterHub's <c>houlsby</c>: weights from a normal with std 0.01 truncated to [−0.02, 0.02], biases zero.</summary>
    Houlsby,
}
