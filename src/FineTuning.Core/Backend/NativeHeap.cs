using System.Runtime.InteropServices;

namespace FineTuning.Core.Backend;

/// <summary>
/// Two hints to the Linux memory system for libtorch's CPU allocations. <see cref="Trim"/> gives freed memory back:
/// glibc's malloc keeps freed blocks below its (self-raising) mmap threshold in its heaps, so after a large one-off
/// release — the full-precision weights quantization replaces — the process would go on holding that memory.
/// <see cref="AdviseHugePages"/> asks for 2 MiB pages for a fresh buffer that is about to be filled, so writing it
/// costs one page fault per 2 MiB instead of one per 4 KiB. Both do nothing off Linux or where the call is missing.
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

    /// <summary>Advises huge pages for the 2 MiB-aligned part of a buffer that has not been written yet.</summary>
    /// <param name="address">The buffer's first byte.</param>
    /// <param name="length">Its length in bytes.</param>
    public static void AdviseHugePages(nint address, long length)
    {
        const long hugePage = 2 << 20;
        const int adviseHugePage = 14; // MADV_HUGEPAGE
        var first = (address + hugePage - 1) & ~(hugePage - 1);
        var last = (address + length) & ~(hugePage - 1);
        if (unavailable || !OperatingSystem.IsLinux() || last - first < hugePage)
        {
            return;
        }

        try
        {
            _ = madvise((nint)first, (nuint)(last - first), adviseHugePage); // a refusal (THP off) leaves normal pages
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;
        }
    }

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int madvise(nint address, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int malloc_trim(nuint pad);
}
