using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>Options for <see cref="HuggingFaceWeights.Save"/>.</summary>
public sealed record WeightSaveOptions
{
    private long? _maxShardBytes;
    private ScalarType? _dtype;
    private IReadOnlyDictionary<string, string>? _metadata;

    /// <summary>The default options: one <c>model.safetensors</c> file, tensors stored in their own dtype.</summary>
    public static WeightSaveOptions Default { get; } = new();

    /// <summary>
    /// When set and the weights exceed it, they are split into shards of at most this many bytes (a single tensor
    /// larger than the limit gets a shard of its own) plus a <c>model.safetensors.index.json</c>.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to zero or a negative value.</exception>
    public long? MaxShardBytes
    {
        get => _maxShardBytes;
        init
        {
            if (value is <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(MaxShardBytes), value, "MaxShardBytes must be positive.");
            }

            _maxShardBytes = value;
        }
    }

    /// <summary>
    /// When set, floating-point tensors are stored in this dtype (Float64, Float32, Float16 or BFloat16); integer and
    /// boolean tensors keep theirs. <see langword="null"/>: every tensor keeps its dtype.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">Set to a type that is not a supported floating-point type.</exception>
    public ScalarType? DType
    {
        get => _dtype;
        init
        {
            if (value is not null and not (ScalarType.Float64 or ScalarType.Float32 or ScalarType.Float16 or ScalarType.BFloat16))
            {
                throw new ArgumentOutOfRangeException(nameof(DType), value, "DType must be Float64, Float32, Float16 or BFloat16.");
            }

            _dtype = value;
        }
    }

    /// <summary>
    /// Extra <c>__metadata__</c> for every file written; <c>format</c> = <c>pt</c> is always included.
    /// <see langword="null"/>: only <c>{"format": "pt"}</c>.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Metadata
    {
        get => _metadata;
        init => _metadata = value is null ? null : new Dictionary<string, string>(value, StringComparer.Ordinal).AsReadOnly();
    }
}
