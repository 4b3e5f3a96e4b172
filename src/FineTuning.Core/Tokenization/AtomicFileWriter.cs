namespace FineTuning.Core.Tokenization;

/// <summary>Writes a file by writing a temporary file in the same folder and then renaming it over the target.</summary>
internal static class AtomicFileWriter
{
    /// <summary>Writes <paramref name="path"/> so that readers see either the old file or the complete new one.</summary>
    /// <param name="path">The destination file.</param>
    /// <param name="write">Writes the content to the given stream.</param>
    public static void Write(string path, Action<Stream> write)
    {
        string fullPath = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(fullPath) ?? ".";
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(fullPath)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, fullPath, overwrite: true);
        }
        catch
        {
            try
            {
                File.Delete(temporary);
            }
            catch (IOException)
            {
                // The original error matters more than a leftover temporary file.
            }

            throw;
        }
    }
}
