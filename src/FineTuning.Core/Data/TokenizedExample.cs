namespace FineTuning.Core.Data;

/// <summary>A training example as token ids with a per-token trainable flag (the trainer masks the loss of the rest).</summary>
public sealed record TokenizedExample
{
    /// <summary>Creates the example.</summary>
    /// <param name="inputIds">The token ids.</param>
    /// <param name="trainableMask">One flag per id: whether the model should learn to predict that token.</param>
    /// <exception cref="ArgumentException">The two lists differ in length.</exception>
    public TokenizedExample(IReadOnlyList<int> inputIds, IReadOnlyList<bool> trainableMask)
    {
        ArgumentNullException.ThrowIfNull(inputIds);
        ArgumentNullException.ThrowIfNull(trainableMask);
        if (inputIds.Count != trainableMask.Count)
        {
            throw new ArgumentException($"The mask has {trainableMask.Count} flags for {inputIds.Count} token ids.", nameof(trainableMask));
        }

        InputIds = inputIds;
        TrainableMask = trainableMask;
    }

    /// <summary>The token ids.</summary>
    public IReadOnlyList<int> InputIds { get; }

    /// <summary>One flag per token: whether it is a training target.</summary>
    public IReadOnlyList<bool> TrainableMask { get; }

    /// <summary>The number of tokens.</summary>
    public int Length => InputIds.Count;

    /// <summary>The number of trainable tokens.</summary>
    public int TrainableCount => TrainableMask.Count(flag => flag);

    /// <summary>Whether the example predicts anything: a second token exists and, with <paramref name="trainableOnly"/>, a trainable one after the first.</summary>
    internal bool HasTargets(bool trainableOnly) => Length > 1 && (!trainableOnly || TrainableMask.Skip(1).Any(flag => flag));

    /// <summary>The example cut to at most <paramref name="maxLength"/> tokens (itself when it is not longer).</summary>
    internal TokenizedExample Truncate(int maxLength) =>
        Length <= maxLength ? this : new TokenizedExample(InputIds.Take(maxLength).ToList(), TrainableMask.Take(maxLength).ToList());
}
