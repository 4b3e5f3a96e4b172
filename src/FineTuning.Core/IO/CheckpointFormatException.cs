namespace FineTuning.Core.IO;

/// <summary>
/// Thrown when a checkpoint file (safetensors data, a shard index) is malformed, or when its contents do not
/// match the model it is loaded into. The message names the file, the tensor (when one is involved) and what
/// was expected.
/// </summary>
/// <remarks>
/// It derives from <see cref="IOException"/> because <see cref="InvalidDataException"/> is sealed; code that
/// handles I/O failures of a load or save therefore also sees format problems.
/// </remarks>
public class CheckpointFormatException : IOException
{
    /// <summary>Creates an exception about <paramref name="filePath"/> and, optionally, one tensor in it.</summary>
    /// <param name="message">A message naming the file, the tensor and what was expected.</param>
    /// <param name="filePath">The file (or model directory) the problem was found in.</param>
    /// <param name="tensorName">The tensor involved, or <see langword="null"/> when the problem concerns the whole file.</param>
    /// <param name="innerException">The underlying error, if any (for example the JSON parser's exception).</param>
    public CheckpointFormatException(string message, string filePath, string? tensorName = null, Exception? innerException = null)
        : base(message, innerException)
    {
        FilePath = filePath;
        TensorName = tensorName;
    }

    /// <summary>The file (or model directory) the problem was found in.</summary>
    public string FilePath { get; }

    /// <summary>The tensor involved, or <see langword="null"/> when the problem concerns the whole file.</summary>
    public string? TensorName { get; }
}
