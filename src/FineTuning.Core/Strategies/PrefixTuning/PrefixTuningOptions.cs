namespace FineTuning.Core.Strategies.PrefixTuning;

/// <summary>
/// Options of prefix tuning with Hugging Face PEFT's semantics (<c>PrefixTuningConfig</c>): every attention layer gets T
/// trainable key/value positions in front of its keys and values; the base model stays frozen.
/// </summary>
public sealed record PrefixTuningOptions
{
    /// <summary>PEFT's defaults with 20 virtual tokens: no projection, random init.</summary>
    public static PrefixTuningOptions Default { get; } = new();

    /// <summary>The number of virtual tokens T (<c>num_virtual_tokens</c>); default 20.</summary>
    public int NumVirtualTokens { get; init; } = 20;

    /// <summary>
    /// Reparameterize the prefix through an MLP while training (<c>prefix_projection</c>): an embedding [T, kv_dim], then
    /// Linear(kv_dim → <see cref="EncoderHiddenSize"/>), Tanh, Linear(→ layers·2·kv_dim). Only the MLP's output is saved,
    /// as PEFT does; default false.
    /// </summary>
    public bool PrefixProjection { get; init; }

    /// <summary>The MLP's hidden width (<c>encoder_hidden_size</c>); <c>null</c> = token_dim (kv_heads × head_dim), PEFT's default.</summary>
    public int? EncoderHiddenSize { get; init; }

    /// <summary>How the encoder starts (<c>init_weights</c>); default <see cref="PrefixTuningInit.Random"/>.</summary>
    public PrefixTuningInit Init { get; init; } = PrefixTuningInit.Random;

    /// <summary>The base model's name or path, written to <c>adapter_config.json</c> (<c>base_model_name_or_path</c>).</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>Seed of the random generator that initialises the encoder.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range or options contradict each other.</exception>
    public void Validate()
    {
        if (NumVirtualTokens <= 0)
        {
            throw Invalid(nameof(NumVirtualTokens), $"must be positive, got {NumVirtualTokens}.");
        }

        if (EncoderHiddenSize is { } size && size <= 0)
        {
            throw Invalid(nameof(EncoderHiddenSize), $"must be positive, got {size}.");
        }

        if (!Enum.IsDefined(Init))
        {
            throw Invalid(nameof(Init), $"must be Random or Zero, got {Init}.");
        }
    }

    private static InvalidOptionException Invalid(string property, string message) => new($"{nameof(PrefixTuningOptions)}.{property}", message);
}
