namespace FineTuning.Core.Generation;

/// <summary>How to decode. Temperature 0 means greedy decoding; otherwise tokens are sampled.</summary>
public sealed record GenerationOptions
{
    /// <summary>Most tokens to generate (default 64).</summary>
    public int MaxNewTokens { get; init; } = 64;

    /// <summary>Softmax temperature; 0 selects greedy decoding (default 0).</summary>
    public double Temperature { get; init; }

    /// <summary>Keep only the k most likely tokens before sampling; 0 disables (default 0).</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of tokens whose probability reaches p (nucleus sampling); 1 disables (default 1).</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Seed of the sampling generator; <c>null</c> draws one at random.</summary>
    public long? Seed { get; init; }

    /// <summary>Token ids that end generation (included in the output); typically the tokenizer's EOS ids.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Checks the values.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A value is out of range; the message names it.</exception>
    public void Validate()
    {
        if (MaxNewTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "MaxNewTokens must be zero or more.");
        }

        if (!(Temperature >= 0) || double.IsInfinity(Temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be a finite number >= 0 (0 = greedy).");
        }

        if (TopK < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "TopK must be >= 0 (0 = disabled).");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
        }
    }
}
