namespace FineTuning.Core.Quantization;

/// <summary>The 4-bit data types of <see cref="Blockwise4BitQuantizer"/>; <see cref="FourBitCodeTable"/> lists their 16 values.</summary>
public enum QuantizationType
{
    /// <summary>
    /// 4-bit NormalFloat (QLoRA): 16 quantiles of N(0, 1) scaled to [−1, 1], with an exact zero (code 7); bitsandbytes'
    /// <c>nf4</c>.
    /// </summary>
    NF4,

    /// <summary>
    /// bitsandbytes' 4-bit float <c>fp4</c>: bit 3 is the sign, the magnitudes are {0, 0.0625, 2, 3, 4, 6, 8, 12}/12
    /// (an E2M1 layout whose subnormal is 0.0625; not OCP/MX FP4).
    /// </summary>
    FP4,

    /// <summary>
    /// Symmetric 4-bit integers k/7 for k = −7…7 in bitsandbytes' <c>get_4bit_type("int4")</c> order: codes 0…7 hold
    /// 7/7…0/7, codes 8…15 hold −0/7…−7/7 (bit 3 is the sign; zero is code 7). bitsandbytes' <c>quantize_4bit</c>
    /// does not accept it, so its checkpoints are this library's own format.
    /// </summary>
    Int4,
}
