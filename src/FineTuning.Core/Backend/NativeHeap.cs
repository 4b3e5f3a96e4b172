using System.Runtime.InteropServices;

namespace FineTuning.Core.Backend;

/// <summary>
/// Gives memory freed by libtorch's CPU allocator back to the operating system. glibc's malloc keeps freed blocks
/// below its (self-raising) mmap threshold in its heaps, so after a large one-off release — the full-precision weights
/// quantization replaces — the process would go on holding that memory. Does nothing off Linux or where the C library
/// has no <c>malloc_trim</c> (musl).
/// </summary>
internal static partial class NativeHeap
{
    private static bool unavailable;

    /// <summary>Returns the free memory of every malloc arena to the operating system.</summary>
    public static void Trim()
    {
        if (unavailable || !OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            _ = malloc_trim(0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
        }
    }

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int malloc_trim(nuint pad);
}
