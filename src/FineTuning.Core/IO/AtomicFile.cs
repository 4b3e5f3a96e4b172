using System.Text;

namespace FineTuning.Core.IO;

/// <summary>
/// Writes files atomically: the content goes to a temporary file in the same folder, which is flushed to disk and
/// then moved over the destination. A failed write never leaves the destination truncated or half written, and the
/// temporary file is removed.
/// </summary>
public static class AtomicFile
{
    private const int BufferSize = 1 << 20;

    /// <summary>The suffix of the temporary files this type creates next to their destination.</summary>
    public const string TemporarySuffix = ".tmp";

    /// <summary>
    /// Atomically replaces (or creates) <paramref name="path"/> with what <paramref name="write"/> writes to the
    /// stream it is given. The folder must exist.
    /// </summary>
    /// <param name="path">The destination file.</param>
    /// <param name="write">Writes the whole content to the stream. It must not dispose the stream.</param>
    public static void Write(string path, Action<Stream> write)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(write);

        string fullPath = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(fullPath)
            ?? throw new ArgumentException($"'{path}' has no parent folder.", nameof(path));
        string tempPath = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}{TemporarySuffix}");

        try
        {
            using (var stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, BufferSize))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(tempPath, fullPath, overwrite: true);
        }
        catch
        {
            TryDelete(tempPath);
            throw;
        }
    }

    /// <summary>Atomically replaces (or creates) <paramref name="path"/> with <paramref name="contents"/> as UTF-8 without a byte order mark.</summary>
    /// <param name="path">The destination file.</param>
    /// <param name="contents">The text to write.</param>
    public static void WriteAllText(string path, string contents)
    {
        ArgumentNullException.ThrowIfNull(contents);
        byte[] bytes = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false).GetBytes(contents);
        Write(path, stream => stream.Write(bytes, 0, bytes.Length));
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the original exception matters more than a leftover temporary file.
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}
