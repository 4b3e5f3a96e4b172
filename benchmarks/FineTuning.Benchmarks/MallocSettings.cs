using System.Runtime.InteropServices;

namespace FineTuning.Benchmarks;

/// <summary>
/// glibc malloc settings for memory benchmarks. By default glibc raises its mmap threshold (up to 32 MiB) each time a
/// mapped block is freed, after which blocks below it come from heaps that keep freed memory, so RSS shows what the
/// allocator holds rather than what the program uses. A fixed 1 MiB threshold maps every tensor-sized block and unmaps
/// it when freed, so peak RSS follows the peak of live memory — the analogue of the peak allocated GPU memory
/// torchtune and PEFT report.
/// </summary>
internal static partial class MallocSettings
{
    private const int MmapThresholdOption = -3; // M_MMAP_THRESHOLD in malloc.h

    /// <summary>Maps every block of 1 MiB or more on its own (Linux glibc only; otherwise nothing happens).</summary>
    public static void MapLargeBlocks()
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                _ = mallopt(MmapThresholdOption, 1 << 20);
            }
            catch (EntryPointNotFoundException)
            {
                // Not glibc: the allocator keeps its own policy.
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int mallopt(int option, int value);
}
