namespace FineTuning.Core.Data;

/// <summary>Thrown when a line of a JSONL data file is not a valid training example.</summary>
public sealed class JsonlFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="filePath">The file (or source name) being read.</param>
    /// <param name="lineNumber">The 1-based line number of the bad line.</param>
    /// <param name="problem">What is wrong and what was expected.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public JsonlFormatException(string filePath, int lineNumber, string problem, Exception? innerException = null)
        : base($"{filePath}, line {lineNumber}: {problem}", innerException)
    {
        FilePath = filePath;
        LineNumber = lineNumber;
        Problem = problem;
    }

    /// <summary>The file (or source name) being read.</summary>
    public string FilePath { get; }

    /// <summary>The 1-based line number of the bad line.</summary>
    public int LineNumber { get; }

    /// <summary>What is wrong with the line, without the file and line prefix.</summary>
    public string Problem { get; }
}
