namespace FineTuning.Core.Data;

/// <summary>Settings for <see cref="ExampleFormatter"/>.</summary>
public sealed record ExampleFormatterOptions
{
    /// <summary>The default options: EOS after text and completions, no length limit.</summary>
    public static ExampleFormatterOptions Default { get; } = new();

    /// <summary>Whether to append the tokenizer's EOS token (trainable) after a <see cref="TextExample"/>.</summary>
    public bool AppendEosToText { get; init; } = true;

    /// <summary>Whether to append the tokenizer's EOS token (trainable) after a completion.</summary>
    public bool AppendEosToCompletion { get; init; } = true;

    /// <summary>When set, sequences longer than this are cut to this many tokens (the end is dropped).</summary>
    public int? MaxSequenceLength { get; init; }
}
