namespace FineTuning.Core.Strategies.Lora;

/// <summary>How a new adapter's A and B matrices are initialised (PEFT's <c>init_lora_weights</c>).</summary>
public enum LoraInit
{
    /// <summary>
    /// <c>true</c>: A from Kaiming-uniform with a = √5 (uniform in ±1/√in_features), B zero, so the adapter is a
    /// no-op at the start.
    /// </summary>
    Default,

    /// <summary><c>"gaussian"</c>: A from N(0, (1/r)²), B zero.</summary>
    Gaussian,

    /// <summary>
    /// <c>"pissa"</c> (or <c>"pissa_niter_N"</c> with <see cref="LoraOptions.PissaNiter"/>): A and B from the top-r
    /// singular triplets of the base weight, which is replaced by the residual <c>W − scaling·B·A</c>, so the
    /// output is unchanged up to rounding but the base weight is mutated.
    /// </summary>
    Pissa,

    /// <summary><c>false</c>: A and B both keep <c>nn.Linear</c>'s random init; the adapter is not a no-op (for debugging).</summary>
    Random,
}
