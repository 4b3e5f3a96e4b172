using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// How <see cref="ModelQuantizer"/> and <see cref="Linear4Bit.FromLinear"/> quantize projections. The defaults are
/// QLoRA's: NF4, double quantization, blocks of 64, bf16 compute.
/// </summary>
public sealed record QuantizationOptions
{
    /// <summary>QLoRA's settings.</summary>
    public static QuantizationOptions Default { get; } = new();

    /// <summary>The 4-bit data type (<c>bnb_4bit_quant_type</c>); NF4 by default.</summary>
    public QuantizationType Type { get; init; } = QuantizationType.NF4;

    /// <summary>Also quantize the per-block scales to 8 bits (<c>bnb_4bit_use_double_quant</c>); on by default.</summary>
    public bool DoubleQuant { get; init; } = true;

    /// <summary>Weights per block: 32, 64, …, 4096; 64 by default (bitsandbytes' CUDA default).</summary>
    public int BlockSize { get; init; } = Blockwise4BitQuantizer.DefaultBlockSize;

    /// <summary>The dtype the forward pass dequantizes to and computes in (<c>bnb_4bit_compute_dtype</c>): BFloat16 by default, Float16 or Float32.</summary>
    public ScalarType ComputeDType { get; init; } = ScalarType.BFloat16;

    /// <summary>
    /// Projections to keep in full precision besides <c>lm_head</c> (never quantized): an entry skips every projection
    /// whose full name contains it, as Transformers' <c>llm_int8_skip_modules</c> does (e.g. <c>down_proj</c>,
    /// <c>layers.0.</c>).
    /// </summary>
    public IReadOnlyList<string> SkipModules { get; init; } = [];

    /// <summary>Whether a projection's full name is skipped by <see cref="SkipModules"/> (<c>lm_head</c> always is).</summary>
    /// <param name="fullName">The module's full name, e.g. <c>model.layers.0.mlp.down_proj</c>.</param>
    /// <returns><c>true</c> when the module stays in full precision.</returns>
    public bool IsSkipped(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        return fullName == "lm_head" || SkipModules.Any(entry => fullName.Contains(entry, StringComparison.Ordinal));
    }

    /// <summary>A one-line description, e.g. <c>nf4, double quant, blocksize 64, compute bfloat16</c>.</summary>
    /// <returns>The description.</returns>
    public override string ToString() =>
        $"{(Enum.IsDefined(Type) ? FourBitCodeTable.Name(Type) : Type.ToString())}, {(DoubleQuant ? "double quant" : "no double quant")}, blocksize {BlockSize}, compute {ComputeDType switch { ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", ScalarType.Float32 => "float32", var other => other.ToString() }}"
        + (SkipModules is not { Count: > 0 } ? "" : $", skipping {string.Join(", ", SkipModules)}");

    /// <summary>Checks the values.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range; the exception names the option.</exception>
    public void Validate()
    {
        if (!Enum.IsDefined(Type))
        {
            throw new InvalidOptionException($"{nameof(QuantizationOptions)}.{nameof(Type)}", $"unknown 4-bit type {(int)Type}; use NF4, FP4 or Int4.");
        }

        if (!Blockwise4BitQuantizer.IsSupportedBlockSize(BlockSize))
        {
            throw new InvalidOptionException($"{nameof(QuantizationOptions)}.{nameof(BlockSize)}", $"must be one of {string.Join(", ", Blockwise4BitQuantizer.SupportedBlockSizes)}, got {BlockSize}.");
        }

        if (ComputeDType is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
        {
            throw new InvalidOptionException($"{nameof(QuantizationOptions)}.{nameof(ComputeDType)}", $"must be BFloat16, Float16 or Float32, got {ComputeDType}.");
        }

        if (SkipModules is null || SkipModules.Any(string.IsNullOrEmpty))
        {
            throw new InvalidOptionException($"{nameof(QuantizationOptions)}.{nameof(SkipModules)}", "must be a list of non-empty module names.");
        }
    }
}
