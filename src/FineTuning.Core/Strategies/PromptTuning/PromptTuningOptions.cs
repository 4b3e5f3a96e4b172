namespace FineTuning.Core.Strategies.PromptTuning;

/// <summary>
/// Options of prompt tuning with Hugging Face PEFT's semantics (<c>PromptTuningConfig</c>): T trainable virtual-token
/// embeddings [T, hidden] are prepended to every input's token embeddings; the base model stays frozen.
/// </summary>
public sealed record PromptTuningOptions
{
    /// <summary>PEFT's defaults with 20 virtual tokens and random init.</summary>
    public static PromptTuningOptions Default { get; } = new();

    /// <summary>The number of virtual tokens T (<c>num_virtual_tokens</c>); default 20.</summary>
    public int NumVirtualTokens { get; init; } = 20;

    /// <summary>How the virtual tokens start (<c>prompt_tuning_init</c>); default <see cref="PromptTuningInit.Random"/>.</summary>
    public PromptTuningInit Init { get; init; } = PromptTuningInit.Random;

    /// <summary>The text whose token embeddings start the virtual tokens (<c>prompt_tuning_init_text</c>); required with <see cref="PromptTuningInit.Text"/>.</summary>
    public string? InitText { get; init; }

    /// <summary>
    /// The tokenizer's name or folder, written to <c>adapter_config.json</c> (<c>tokenizer_name_or_path</c>; PEFT needs it
    /// to rebuild a TEXT init). The builder and the CLI fill it with the model folder when it is <c>null</c>.
    /// </summary>
    public string? TokenizerNameOrPath { get; init; }

    /// <summary>The base model's name or path, written to <c>adapter_config.json</c> (<c>base_model_name_or_path</c>).</summary>
    public string? BaseModelNameOrPath { get; init; }

    /// <summary>Seed of the random generator used by <see cref="PromptTuningInit.Random"/> and <see cref="PromptTuningInit.SampleVocab"/>.</summary>
    public long Seed { get; init; } = 42;

    /// <summary>Checks the values that do not depend on a model.</summary>
    /// <exception cref="InvalidOptionException">A value is out of range or options contradict each other.</exception>
    public void Validate()
    {
        if (NumVirtualTokens <= 0)
        {
            throw Invalid(nameof(NumVirtualTokens), $"must be positive, got {NumVirtualTokens}.");
        }

        if (!Enum.IsDefined(Init))
        {
            throw Invalid(nameof(Init), $"must be Random, Text or SampleVocab, got {Init}.");
        }

        if (Init == PromptTuningInit.Text && string.IsNullOrEmpty(InitText))
        {
            throw Invalid(nameof(InitText), "is required with Init = Text (the text whose token embeddings start the virtual tokens).");
        }

        if (Init != PromptTuningInit.Text && InitText is not null)
        {
            throw Invalid(nameof(InitText), $"only applies with Init = Text, but Init is {Init}.");
        }
    }

    private static InvalidOptionException Invalid(string property, string message) => new($"{nameof(PromptTuningOptions)}.{property}", message);
}
