using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>
/// Rotary position embeddings in Hugging Face's <c>rotate_half</c> layout: the first half of each head's
/// channels pairs with the second half, and <c>cos</c>/<c>sin</c> repeat the frequencies twice.
/// Supports <c>rope_scaling</c> types <c>default</c>, <c>linear</c> and <c>llama3</c>.
/// </summary>
public sealed class RotaryEmbedding : nn.Module
{
    private readonly Tensor inv_freq;

    /// <summary>Creates the frequency table for a configuration.</summary>
    /// <param name="config">The model configuration (head_dim, rope_theta, rope_scaling).</param>
    /// <param name="device">Where the frequency buffer lives.</param>
    public RotaryEmbedding(ModelConfig config, Device device) : base(nameof(RotaryEmbedding))
    {
        var frequencies = InverseFrequencies(config.HeadDim, config.RopeTheta, config.RopeScaling);
        inv_freq = tensor(frequencies, dtype: ScalarType.Float32, device: device).DetachFromDisposeScope();
        register_buffer("inv_freq", inv_freq, persistent: false);
        RegisterComponents();
    }

    /// <summary>
    /// The inverse frequencies <c>1 / theta^(2i/d)</c>, i = 0..d/2-1, after rope scaling; computed in double
    /// precision so tests can compare against values worked by hand.
    /// </summary>
    /// <param name="headDim">The per-head width (even).</param>
    /// <param name="theta">The rotary base.</param>
    /// <param name="scaling">Optional frequency scaling.</param>
    /// <returns>d/2 inverse frequencies.</returns>
    public static float[] InverseFrequencies(int headDim, double theta, RopeScaling? scaling)
    {
        var result = new float[headDim / 2];
        for (var i = 0; i < result.Length; i++)
        {
            var invFreq = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
            result[i] = (float)(scaling?.RopeType switch
            {
                "linear" => invFreq / scaling.Factor,
                "llama3" => Llama3Scale(invFreq, scaling),
                _ => invFreq,
            });
        }

        return result;
    }

    private static double Llama3Scale(double invFreq, RopeScaling s)
    {
        var lowFreqWavelength = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor;
        var highFreqWavelength = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
        var wavelength = 2 * Math.PI / invFreq;
        if (wavelength < highFreqWavelength)
        {
            return invFreq; // high frequencies are kept
        }

        if (wavelength > lowFreqWavelength)
        {
            return invFreq / s.Factor; // low frequencies are scaled fully
        }

        var smooth = (s.OriginalMaxPositionEmbeddings / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
        return (1 - smooth) * invFreq / s.Factor + smooth * invFreq;
    }

    /// <summary>Computes <c>cos</c> and <c>sin</c> for the given positions, in fp32, shaped [batch, seq, head_dim].</summary>
    /// <param name="positionIds">Absolute positions, [batch, seq] int64.</param>
    /// <returns>The cosine and sine tables; the caller disposes them.</returns>
    public (Tensor Cos, Tensor Sin) Compute(Tensor positionIds)
    {
        using var scope = NewDisposeScope();
        var freqs = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inv_freq.to(positionIds.device);
        var emb = cat([freqs, freqs], dim: -1);
        var cos = emb.cos().MoveToOuterDisposeScope();
        var sin = emb.sin().MoveToOuterDisposeScope();
        return (cos, sin);
    }

    /// <summary>Applies the rotation to queries or keys shaped [batch, heads, seq, head_dim].</summary>
    /// <param name="x">The tensor to rotate.</param>
    /// <param name="cos">Cosines from <see cref="Compute"/>, [batch, seq, head_dim].</param>
    /// <param name="sin">Sines from <see cref="Compute"/>.</param>
    /// <returns><c>x * cos + rotate_half(x) * sin</c> in the dtype of <paramref name="x"/>.</returns>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1).to(x.dtype);
        var s = sin.unsqueeze(1).to(x.dtype);
        var half = x.shape[^1] / 2;
        var rotated = cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], dim: -1);
        return (x * c + rotated * s).MoveToOuterDisposeScope();
    }
}
