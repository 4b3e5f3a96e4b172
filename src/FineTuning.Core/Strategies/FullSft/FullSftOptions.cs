namespace FineTuning.Core.Strategies.FullSft;

/// <summary>Options of full supervised fine-tuning: every parameter trains unless frozen here.</summary>
public sealed record FullSftOptions
{
    /// <summary>The defaults: everything trains.</summary>
    public static FullSftOptions Default { get; } = new();

    /// <summary>Keep the token embeddings (and a head tied to them) frozen.</summary>
    public bool FreezeEmbeddings { get; init; }

    /// <summary>Keep the first N decoder layers frozen (0 = none).</summary>
    public int FreezeFirstLayers { get; init; }

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range.</exception>
    public void Validate()
    {
        if (FreezeFirstLayers < 0)
        {
            throw new InvalidOptionException($"{nameof(FullSftOptions)}.{nameof(FreezeFirstLayers)}", $"must be 0 or more, got {FreezeFirstLayers}.");
        }
    }
}
