using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Generation;

/// <summary>Chooses the next token from a row of logits: greedy, or sampled after temperature, top-k and top-p filtering.</summary>
public sealed class TokenSampler
{
    private readonly GenerationOptions options;
    private readonly Generator? generator;

    /// <summary>Creates a sampler.</summary>
    /// <param name="options">Decoding options (validated).</param>
    /// <param name="device">Device of the logits (the generator lives there).</param>
    public TokenSampler(GenerationOptions options, Device device)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        this.options = options;
        if (options.Temperature > 0)
        {
            generator = new Generator((ulong)(options.Seed ?? Random.Shared.NextInt64()), device);
        }
    }

    /// <summary>Picks the next token.</summary>
    /// <param name="logits">Logits of one position, [vocab] fp32.</param>
    /// <returns>The token id.</returns>
    public int Next(Tensor logits)
    {
        using var scope = NewDisposeScope();
        if (generator is null)
        {
            return (int)logits.argmax().item<long>();
        }

        var probabilities = FilteredProbabilities(logits, options.Temperature, options.TopK, options.TopP);
        return (int)multinomial(probabilities, 1, generator: generator).item<long>();
    }

    /// <summary>
    /// The sampling distribution: softmax(logits / temperature) restricted to the top-k tokens and to the smallest
    /// set whose probability reaches top-p (the most likely token is always kept), renormalised.
    /// </summary>
    /// <param name="logits">Logits of one position, [vocab].</param>
    /// <param name="temperature">Positive temperature.</param>
    /// <param name="topK">0 to disable.</param>
    /// <param name="topP">1 to disable.</param>
    /// <returns>Probabilities, [vocab] fp32, summing to one.</returns>
    public static Tensor FilteredProbabilities(Tensor logits, double temperature, int topK, double topP)
    {
        using var scope = NewDisposeScope();
        var scaled = logits.to(ScalarType.Float32) / temperature;
        if (topK > 0 && topK < scaled.shape[0])
        {
            var kth = scaled.topk(topK).values[topK - 1];
            scaled = scaled.masked_fill(scaled < kth, double.NegativeInfinity);
        }

        var probabilities = scaled.softmax(0);
        if (topP < 1)
        {
            var (sorted, order) = probabilities.sort(descending: true);
            var before = sorted.cumsum(0) - sorted; // probability mass strictly ahead of each token
            var drop = before >= topP;
            drop[0] = tensor(false);
            var dropInOriginalOrder = zeros_like(drop).scatter(0, order, drop);
            probabilities = probabilities.masked_fill(dropInOriginalOrder, 0);
            probabilities = probabilities / probabilities.sum();
        }

        return probabilities.MoveToOuterDisposeScope();
    }
}
