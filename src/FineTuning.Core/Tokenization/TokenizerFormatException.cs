namespace FineTuning.Core.Tokenization;

/// <summary>Thrown when a tokenizer file (<c>tokenizer.json</c>, <c>tokenizer_config.json</c>, <c>tokenizer.model</c>) cannot be read.</summary>
public sealed class TokenizerFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file that could not be read.</param>
    /// <param name="message">What is wrong with it.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public TokenizerFormatException(string filePath, string message, Exception? innerException = null)
        : base($"{filePath}: {message}", innerException)
    {
        FilePath = filePath;
    }

    /// <summary>The file that could not be read.</summary>
    public string FilePath { get; }
}
