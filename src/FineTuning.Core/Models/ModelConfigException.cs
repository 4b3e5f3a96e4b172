namespace FineTuning.Core.Models;

/// <summary>A model configuration (usually a Hugging Face <c>config.json</c>) is invalid or unsupported.</summary>
public sealed class ModelConfigException : Exception
{
    /// <summary>Creates the exception for one offending field.</summary>
    /// <param name="field">The JSON field name (for example <c>num_attention_heads</c>).</param>
    /// <param name="message">What is wrong and what was expected.</param>
    /// <param name="filePath">The file the configuration came from, when known.</param>
    public ModelConfigException(string field, string message, string? filePath = null)
        : base(filePath is null ? $"Model config field '{field}': {message}" : $"{filePath}: field '{field}': {message}")
    {
        Field = field;
        FilePath = filePath;
    }

    /// <summary>The JSON field that is wrong.</summary>
    public string Field { get; }

    /// <summary>The configuration file, when the configuration was read from disk.</summary>
    public string? FilePath { get; }
}
