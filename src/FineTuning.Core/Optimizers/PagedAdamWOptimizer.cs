using System.Globalization;
using FineTuning.Core.IO;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>
/// AdamW whose state lives in pages and is updated one page (a slice of <c>PageSizeBytes / 4</c> elements of a
/// parameter) at a time: <see cref="OptimizerKind.PagedAdamW"/> (fp32 moments in host-memory pages, spilling to a
/// memory-mapped file), <see cref="OptimizerKind.AdamW8bit"/> (bitsandbytes' blockwise 8-bit moments, kept on the
/// parameter's device) and <see cref="OptimizerKind.PagedAdamW8bit"/> (8-bit moments in host-memory pages).
/// </summary>
/// <remarks>
/// <para>Paged kinds keep the first pages (in parameter order) on the parameter's device up to
/// <see cref="OptimizerOptions.DeviceMemoryBudgetBytes"/>, the next ones in host memory up to
/// <see cref="OptimizerOptions.HostMemoryBudgetBytes"/> and the rest in a spill file. During a step each parameter is
/// updated slice by slice: the slice's pages are copied to the device, the slice of the parameter is updated, the
/// pages are copied back, so the device holds at most one page of each state beyond its budget.</para>
/// <para>The update is <see cref="AdamWUpdate"/>'s, element-wise, so the fp32 kinds give <see cref="AdamWOptimizer"/>'s
/// values; bf16 and fp16 parameters get an fp32 master copy in pages too. The 8-bit kinds quantize both moments per
/// block of <see cref="OptimizerOptions.StateBlockSize"/> elements (signed dynamic map for the first, unsigned for the
/// second); parameters with fewer than <see cref="OptimizerOptions.Min8BitSize"/> elements keep fp32 moments.</para>
/// <para>State file keys: <c>{name}.exp_avg</c> and <c>{name}.exp_avg_sq</c> (fp32, the parameter's shape; the same
/// file as <see cref="AdamWOptimizer"/>'s) or for 8-bit moments <c>{name}.exp_avg.codes</c> (uint8, the parameter's
/// shape) and <c>{name}.exp_avg.absmax</c> (fp32, one per block), likewise for <c>exp_avg_sq</c>; <c>{name}.master</c>
/// for master copies.</para>
/// </remarks>
internal sealed class PagedAdamWOptimizer : AdamWOptimizerBase
{
    private const string BlockSizeKey = "block_size";
    private const string CodesSuffix = ".codes";
    private const string AbsmaxSuffix = ".absmax";
    private readonly PageStore store;
    private readonly Slot[] slots;
    private readonly long chunkElements;

    /// <summary>Creates the optimizer and its zeroed state.</summary>
    /// <param name="parameters">The parameters to train, with unique names; each must be contiguous.</param>
    /// <param name="options">The settings; <see cref="OptimizerOptions.Kind"/> must not be <see cref="OptimizerKind.AdamW"/>.</param>
    public PagedAdamWOptimizer(IReadOnlyList<NamedParameter> parameters, OptimizerOptions options)
        : base(parameters, options)
    {
        if (options.Kind == OptimizerKind.AdamW)
        {
            throw new ArgumentException($"{nameof(OptimizerKind.AdamW)} is {nameof(AdamWOptimizer)}'s kind.", nameof(options));
        }

        chunkElements = options.PageSizeBytes / sizeof(float);
        store = options.Paged
            ? new PageStore(options.DeviceMemoryBudgetBytes, options.HostMemoryBudgetBytes, options.SpillDirectory)
            : new PageStore(long.MaxValue, null, null);
        try
        {
            slots = Parameters.Select(p => new Slot(p, store, options, chunkElements)).ToArray();
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            foreach (var slot in slots)
            {
                slot.Master?.Scatter(slot.Parameter.detach().reshape(-1));
            }
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    /// <summary>The bytes of state held (moments, absmax and master copies), whatever their tier.</summary>
    public long StateBytes => slots.Sum(s => s.Buffers.Sum(b => b.Bytes));

    /// <summary>Bytes of state in host memory.</summary>
    public long HostBytes => store.HostBytes;

    /// <summary>Bytes of state in the spill file.</summary>
    public long SpilledBytes => store.SpilledBytes;

    /// <summary>The spill file while it exists.</summary>
    public string? SpillFilePath => store.SpillFilePath;

    /// <summary>The most bytes of optimizer state on the device at once since <see cref="ResetDevicePeak"/>: resident pages, pages brought in and the fp32 working copies of 8-bit moments.</summary>
    public long DevicePeakBytes => store.DevicePeakBytes;

    /// <summary>
    /// The device bytes that updating one slice needs beyond the resident pages: one page per fp32 state (moments and
    /// master copy) and, per 8-bit moment, its codes, absmax and fp32 working copy.
    /// </summary>
    public long SliceWorkingBytes => slots.Length == 0 ? 0 : slots.Max(s => s.WorkingBytes(chunkElements));

    /// <summary>The names of the parameters whose moments are 8-bit.</summary>
    public IReadOnlyList<string> EightBitNames => slots.Where(s => s.EightBit).Select(s => s.Name).ToList();

    /// <inheritdoc />
    protected override string Name => Options.Kind switch
    {
        OptimizerKind.PagedAdamW => "paged_adamw",
        OptimizerKind.AdamW8bit => "adamw_8bit",
        _ => "paged_adamw_8bit",
    };

    /// <inheritdoc />
    protected override bool EightBit => Options.EightBit;

    /// <summary>Starts a new device peak.</summary>
    public void ResetDevicePeak() => store.ResetPeak();

    /// <summary>A state of a parameter as a new fp32 CPU tensor of its shape (8-bit moments dequantized).</summary>
    /// <param name="name">The parameter's name.</param>
    /// <param name="state"><c>exp_avg</c>, <c>exp_avg_sq</c> or <c>master</c>.</param>
    public Tensor Gather(string name, string state)
    {
        using var scope = NewDisposeScope();
        var slot = slots.Single(s => s.Name == name);
        var (values, absmax) = state switch
        {
            "exp_avg" => (slot.ExpAvg, slot.ExpAvgAbsmax),
            "exp_avg_sq" => (slot.ExpAvgSq, slot.ExpAvgSqAbsmax),
            "master" => (slot.Master ?? throw new ArgumentException($"'{name}' has no master copy.", nameof(state)), null),
            _ => throw new ArgumentOutOfRangeException(nameof(state), state, "Not a state."),
        };
        var flat = values.Gather(CPU);
        if (absmax is not null)
        {
            var map = state == "exp_avg" ? DynamicQuantizationMap.Signed : DynamicQuantizationMap.Unsigned;
            flat = Blockwise8BitQuantizer.Dequantize(new BlockwiseQuantized8Bit(flat, absmax.Gather(CPU), Options.StateBlockSize), map);
        }

        return flat.reshape(slot.Parameter.shape).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public override void Dispose() => store.Dispose();

    /// <inheritdoc />
    protected override void Update(int index, Tensor grad, double coefficient, in AdamWStep step)
    {
        var slot = slots[index];
        var flatGrad = grad.reshape(-1);
        var flatParameter = slot.Parameter.view(-1);
        for (var chunk = 0; chunk < slot.Chunks; chunk++)
        {
            using var scope = NewDisposeScope();
            var start = chunk * chunkElements;
            var length = Math.Min(chunkElements, slot.Length - start);
            var g32 = Clipped(flatGrad.narrow(0, start, length), coefficient);
            var parameter = flatParameter.narrow(0, start, length);
            using var master = slot.Master?.Checkout(chunk);
            using var expAvg = slot.ExpAvg.Checkout(chunk);
            using var expAvgSq = slot.ExpAvgSq.Checkout(chunk);
            var weights = master?.Tensor ?? parameter;
            if (slot.EightBit)
            {
                using var expAvgAbsmax = slot.ExpAvgAbsmax!.Checkout(chunk);
                using var expAvgSqAbsmax = slot.ExpAvgSqAbsmax!.Checkout(chunk);
                var workingBytes = 2 * length * sizeof(float);
                store.Track(workingBytes);
                try
                {
                    AdamWUpdate.Apply8Bit(
                        weights,
                        new BlockwiseQuantized8Bit(expAvg.Tensor, expAvgAbsmax.Tensor, Options.StateBlockSize),
                        new BlockwiseQuantized8Bit(expAvgSq.Tensor, expAvgSqAbsmax.Tensor, Options.StateBlockSize),
                        g32,
                        slot.Decay,
                        step);
                }
                finally
                {
                    store.Track(-workingBytes);
                }

                expAvgAbsmax.Commit();
                expAvgSqAbsmax.Commit();
            }
            else
            {
                AdamWUpdate.Apply(weights, expAvg.Tensor, expAvgSq.Tensor, g32, slot.Decay, step);
            }

            expAvg.Commit();
            expAvgSq.Commit();
            if (master is not null)
            {
                parameter.copy_(master.Tensor);
                master.Commit();
            }
        }
    }

    /// <inheritdoc />
    protected override IEnumerable<KeyValuePair<string, Tensor>> State()
    {
        foreach (var slot in slots)
        {
            foreach (var (key, buffer, shape) in slot.Saved())
            {
                yield return new(key, buffer.Gather(CPU).reshape(shape));
            }
        }
    }

    /// <inheritdoc />
    protected override IEnumerable<KeyValuePair<string, string>> Metadata() =>
        EightBit ? [new(BlockSizeKey, Options.StateBlockSize.ToString(CultureInfo.InvariantCulture))] : [];

    /// <inheritdoc />
    protected override void LoadState(SafetensorsReader reader, string path)
    {
        if (EightBit && reader.Metadata.GetValueOrDefault(BlockSizeKey) != Options.StateBlockSize.ToString(CultureInfo.InvariantCulture))
        {
            throw new CheckpointFormatException($"Optimizer state '{path}' has 8-bit blocks of {reader.Metadata.GetValueOrDefault(BlockSizeKey, "?")} elements, not {Options.StateBlockSize} ({nameof(OptimizerOptions)}.{nameof(OptimizerOptions.StateBlockSize)}).", path);
        }

        foreach (var slot in slots)
        {
            foreach (var (key, buffer, shape) in slot.Saved())
            {
                using var scope = NewDisposeScope();
                var values = empty(shape, reader.GetInfo(key).ScalarType == ScalarType.Byte ? ScalarType.Byte : ScalarType.Float32, CPU);
                reader.ReadInto(key, values);
                buffer.Scatter(values.reshape(-1));
            }
        }
    }

    private sealed class Slot
    {
        public Slot(NamedParameter named, PageStore store, OptimizerOptions options, long chunkElements)
        {
            Name = named.Name;
            Parameter = named.Parameter;
            if (!Parameter.is_contiguous())
            {
                throw new ArgumentException($"Parameter '{Name}' is not contiguous; the paged and 8-bit optimizers update parameters in flat slices.", nameof(named));
            }

            Decay = AppliesWeightDecay(Parameter);
            HasMaster = Parameter.dtype != ScalarType.Float32;
            Length = Parameter.numel();
            Chunks = (int)((Length + chunkElements - 1) / chunkElements);
            EightBit = options.EightBit && Length >= options.Min8BitSize;
            var device = Parameter.device;
            var momentType = EightBit ? ScalarType.Byte : ScalarType.Float32;
            var blockSize = options.StateBlockSize;
            ExpAvg = new PagedBuffer(store, momentType, Length, chunkElements, device);
            ExpAvgSq = new PagedBuffer(store, momentType, Length, chunkElements, device);
            if (EightBit)
            {
                var blocks = (Length + blockSize - 1) / blockSize;
                ExpAvgAbsmax = new PagedBuffer(store, ScalarType.Float32, blocks, chunkElements / blockSize, device);
                ExpAvgSqAbsmax = new PagedBuffer(store, ScalarType.Float32, blocks, chunkElements / blockSize, device);
            }

            Master = HasMaster ? new PagedBuffer(store, ScalarType.Float32, Length, chunkElements, device) : null;
        }

        public string Name { get; }

        public Parameter Parameter { get; }

        public bool Decay { get; }

        public bool HasMaster { get; }

        public bool EightBit { get; }

        public long Length { get; }

        public int Chunks { get; }

        public PagedBuffer ExpAvg { get; }

        public PagedBuffer ExpAvgSq { get; }

        public PagedBuffer? ExpAvgAbsmax { get; }

        public PagedBuffer? ExpAvgSqAbsmax { get; }

        public PagedBuffer? Master { get; }

        public IEnumerable<PagedBuffer> Buffers => new[] { ExpAvg, ExpAvgSq, ExpAvgAbsmax, ExpAvgSqAbsmax, Master }.OfType<PagedBuffer>();

        /// <summary>The device bytes one slice's update needs beyond resident pages.</summary>
        public long WorkingBytes(long chunkElements)
        {
            var length = Math.Min(chunkElements, Length);
            var master = HasMaster ? length * sizeof(float) : 0;
            if (!EightBit)
            {
                return master + (2 * length * sizeof(float));
            }

            var absmax = Math.Min(ExpAvgAbsmax!.PageElements, ExpAvgAbsmax.Length) * sizeof(float);
            return master + (2 * (length + absmax + (length * sizeof(float))));
        }

        /// <summary>The saved tensors: key, buffer and shape.</summary>
        public IEnumerable<(string Key, PagedBuffer Buffer, long[] Shape)> Saved()
        {
            if (EightBit)
            {
                yield return (Name + ".exp_avg" + CodesSuffix, ExpAvg, Parameter.shape);
                yield return (Name + ".exp_avg" + AbsmaxSuffix, ExpAvgAbsmax!, [ExpAvgAbsmax!.Length]);
                yield return (Name + ".exp_avg_sq" + CodesSuffix, ExpAvgSq, Parameter.shape);
                yield return (Name + ".exp_avg_sq" + AbsmaxSuffix, ExpAvgSqAbsmax!, [ExpAvgSqAbsmax!.Length]);
            }
            else
            {
                yield return (Name + ".exp_avg", ExpAvg, Parameter.shape);
                yield return (Name + ".exp_avg_sq", ExpAvgSq, Parameter.shape);
            }

            if (Master is not null)
            {
                yield return (Name + ".master", Master, Parameter.shape);
            }
        }
    }
}
