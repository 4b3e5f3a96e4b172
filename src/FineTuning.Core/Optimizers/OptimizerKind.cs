namespace FineTuning.Core.Optimizers;

/// <summary>The optimizer the trainer builds. All are AdamW (decoupled weight decay, Loshchilov and Hutter); they differ in where and how the state is kept.</summary>
public enum OptimizerKind
{
    /// <summary>AdamW with decoupled weight decay (Loshchilov and Hutter), fp32 states on the parameter's device.</summary>
    AdamW,

    /// <summary>
    /// AdamW with fp32 states kept in fixed-size pages in host memory (spilling to a memory-mapped file past
    /// <see cref="OptimizerOptions.HostMemoryBudgetBytes"/>) and brought to the parameter's device one page at a time
    /// during the step; the same update as <see cref="AdamW"/> (bitsandbytes' <c>PagedAdamW32bit</c>).
    /// </summary>
    PagedAdamW,

    /// <summary>
    /// AdamW with both moments quantized blockwise to 8 bits (bitsandbytes' <c>AdamW8bit</c>): about 2 bytes of state per
    /// parameter instead of 8; tensors smaller than <see cref="OptimizerOptions.Min8BitSize"/> keep fp32 states.
    /// </summary>
    AdamW8bit,

    /// <summary><see cref="AdamW8bit"/> states kept in pages like <see cref="PagedAdamW"/> (bitsandbytes' <c>PagedAdamW8bit</c>).</summary>
    PagedAdamW8bit,
}
