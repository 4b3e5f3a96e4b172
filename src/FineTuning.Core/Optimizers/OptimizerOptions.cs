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

    /// <summary>
    /// Paged kinds: the size of one page of one state, in bytes (default 2 MiB). A page holds
    /// <c>PageSizeBytes / 4</c> elements of a parameter; every kind updates a parameter in such slices, so the fp32
    /// working copies of the states on the device never exceed about one page per state. A multiple of
    /// 4 · <see cref="StateBlockSize"/>, at most 1 GiB.
    /// </summary>
    public long PageSizeBytes { get; init; } = 2 * 1024 * 1024;

    /// <summary>
    /// Paged kinds: how many bytes of optimizer state may stay on the parameter's device between steps (the first pages,
    /// in parameter order); the other pages live in host memory and are copied to the device page by page during the
    /// step. Default 0: every page lives in host memory, the device holds only the pages being updated.
    /// </summary>
    public long DeviceMemoryBudgetBytes { get; init; }

    /// <summary>
    /// Paged kinds: how many bytes of pages may live in host memory (pinned when the parameters are on a GPU); the pages
    /// past it spill to a memory-mapped file in <see cref="SpillDirectory"/>. <c>null</c> (default): no limit.
    /// </summary>
    public long? HostMemoryBudgetBytes { get; init; }

    /// <summary>Paged kinds: the folder for the spill file (created if missing; the file is deleted when the optimizer is disposed). <c>null</c>: the system temporary folder.</summary>
    public string? SpillDirectory { get; init; }

    /// <summary>8-bit kinds: parameters with fewer elements keep fp32 states (bitsandbytes' <c>min_8bit_size</c>, default 4096).</summary>
    public int Min8BitSize { get; init; } = 4096;

    /// <summary>8-bit kinds: elements per quantization block, each with its own fp32 absmax (bitsandbytes uses 256). A power of two from 64 to 4096.</summary>
    public int StateBlockSize { get; init; } = 256;

    /// <summary>Whether <see cref="Kind"/> quantizes the moments to 8 bits.</summary>
    internal bool EightBit => Kind is OptimizerKind.AdamW8bit or OptimizerKind.PagedAdamW8bit;

    /// <summary>Whether <see cref="Kind"/> keeps its state in host-memory pages.</summary>
    internal bool Paged => Kind is OptimizerKind.PagedAdamW or OptimizerKind.PagedAdamW8bit;

    /// <summary>Checks every value.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range.</exception>
    public void Validate()
    {
        const long MaxPageSizeBytes = 1L << 30;
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

        if (!Enum.IsDefined(Kind))
        {
            throw new InvalidOptionException(prefix + nameof(Kind), $"must be one of {string.Join(", ", Enum.GetNames<OptimizerKind>())}, got {(int)Kind}.");
        }

        if (StateBlockSize is < 64 or > 4096 || (StateBlockSize & (StateBlockSize - 1)) != 0)
        {
            throw new InvalidOptionException(prefix + nameof(StateBlockSize), $"must be a power of two from 64 to 4096, got {StateBlockSize}.");
        }

        if (PageSizeBytes is < 4 or > MaxPageSizeBytes || PageSizeBytes % (4L * StateBlockSize) != 0)
        {
            throw new InvalidOptionException(prefix + nameof(PageSizeBytes), $"must be a multiple of 4 x {nameof(StateBlockSize)} ({4L * StateBlockSize} bytes) and at most 1 GiB, got {PageSizeBytes}.");
        }

        if (DeviceMemoryBudgetBytes < 0)
        {
            throw new InvalidOptionException(prefix + nameof(DeviceMemoryBudgetBytes), $"must be 0 or more, got {DeviceMemoryBudgetBytes}.");
        }

        if (HostMemoryBudgetBytes < 0)
        {
            throw new InvalidOptionException(prefix + nameof(HostMemoryBudgetBytes), $"must be 0 or more (or null for no limit), got {HostMemoryBudgetBytes}.");
        }

        if (SpillDirectory is not null && (string.IsNullOrWhiteSpace(SpillDirectory) || SpillDirectory.IndexOfAny(Path.GetInvalidPathChars()) >= 0))
        {
            throw new InvalidOptionException(prefix + nameof(SpillDirectory), $"must be a folder path (or null for the temporary folder), got '{SpillDirectory}'.");
        }

        if (Min8BitSize < 0)
        {
            throw new InvalidOptionException(prefix + nameof(Min8BitSize), $"must be 0 or more, got {Min8BitSize}.");
        }
    }
}
