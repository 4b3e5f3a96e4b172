namespace FineTuning.Core.Models;

/// <summary>
/// Marks the re-run of one decoder layer inside activation checkpointing's backward, which is followed at once by
/// that layer's backward pass. Modules that would otherwise recompute something in their backward (a 4-bit Linear
/// dequantizing its weight again) may keep it instead: only one layer's worth is alive at a time. Per thread.
/// </summary>
internal static class LayerRecomputation
{
    [ThreadStatic]
    private static int depth;

    /// <summary>Whether the current thread is re-running a layer for its backward.</summary>
    public static bool IsActive => depth > 0;

    /// <summary>Marks the current thread until the returned scope is disposed.</summary>
    /// <returns>The scope.</returns>
    public static IDisposable Enter()
    {
        depth++;
        return new Scope();
    }

    private sealed class Scope : IDisposable
    {
        private bool disposed;

        public void Dispose()
        {
            if (!disposed)
            {
                disposed = true;
                depth--;
            }
        }
    }
}
