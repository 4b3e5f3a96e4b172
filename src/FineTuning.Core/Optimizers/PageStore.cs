using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using FineTuning.Core.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>Where a page of optimizer state lives between steps.</summary>
internal enum PageTier
{
    /// <summary>On the parameter's device (within the device budget): used in place.</summary>
    Device,

    /// <summary>In host memory (pinned when the parameter is on a GPU): copied to the device for the update and back.</summary>
    Host,

    /// <summary>In the memory-mapped spill file: read through a host buffer to the device and written back.</summary>
    Spilled,
}

/// <summary>One page: a flat run of elements of one state of one parameter.</summary>
internal sealed class Page
{
    public Page(PageTier tier, ScalarType dtype, long elements, long bytes, Device device, Tensor? data, long offset)
    {
        Tier = tier;
        DType = dtype;
        Elements = elements;
        Bytes = bytes;
        Device = device;
        Data = data;
        Offset = offset;
    }

    public PageTier Tier { get; }

    public ScalarType DType { get; }

    public long Elements { get; }

    public long Bytes { get; }

    /// <summary>The device of the parameter the page belongs to: where it is updated.</summary>
    public Device Device { get; }

    /// <summary>The values for the device and host tiers.</summary>
    public Tensor? Data { get; }

    /// <summary>The byte offset in the spill file for the spilled tier.</summary>
    public long Offset { get; }
}

/// <summary>
/// Memory for paged optimizer state in three tiers, filled in order as pages are allocated: the parameter's device up to
/// a device budget, host memory up to a host budget, then a memory-mapped spill file (created when first needed after
/// the last allocation, deleted on dispose). <see cref="Checkout"/> brings a page to its device for an update and
/// <see cref="PageLease.Commit"/> writes it back; the store counts the bytes of state on the devices at any moment and
/// their peak.
/// </summary>
internal sealed unsafe class PageStore : IDisposable
{
    private const int SpillAlignment = 64;
    private readonly long deviceBudget;
    private readonly long? hostBudget;
    private readonly string spillDirectory;
    private readonly List<Page> pages = [];
    private readonly Dictionary<ScalarType, long> largestSpilled = [];
    private readonly Dictionary<ScalarType, Tensor> spillStaging = [];
    private long spillBytes;
    private MemoryMappedFile? map;
    private MemoryMappedViewAccessor? view;
    private byte* spillBase;
    private bool disposed;

    /// <summary>Creates an empty store.</summary>
    /// <param name="deviceBudget">Bytes of pages that stay on their device.</param>
    /// <param name="hostBudget">Bytes of pages in host memory; <c>null</c> for no limit.</param>
    /// <param name="spillDirectory">The folder for the spill file; <c>null</c> for the temporary folder.</param>
    public PageStore(long deviceBudget, long? hostBudget, string? spillDirectory)
    {
        this.deviceBudget = deviceBudget;
        this.hostBudget = hostBudget;
        this.spillDirectory = spillDirectory ?? Path.GetTempPath();
    }

    /// <summary>Bytes of pages resident on devices.</summary>
    public long DeviceResidentBytes { get; private set; }

    /// <summary>Bytes of pages in host memory.</summary>
    public long HostBytes { get; private set; }

    /// <summary>Bytes of pages in the spill file.</summary>
    public long SpilledBytes { get; private set; }

    /// <summary>Bytes of optimizer state on devices now: resident pages, pages checked out and tracked temporaries.</summary>
    public long DeviceBytes { get; private set; }

    /// <summary>The largest <see cref="DeviceBytes"/> since the last <see cref="ResetPeak"/>.</summary>
    public long DevicePeakBytes { get; private set; }

    /// <summary>The spill file while it exists.</summary>
    public string? SpillFilePath { get; private set; }

    /// <summary>Allocates a zeroed page in the first tier with room.</summary>
    /// <param name="dtype">The element type.</param>
    /// <param name="elements">The element count.</param>
    /// <param name="device">The device the page is updated on.</param>
    /// <returns>The page.</returns>
    public Page Allocate(ScalarType dtype, long elements, Device device)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (map is not null)
        {
            throw new InvalidOperationException("Pages cannot be allocated once the spill file exists.");
        }

        var bytes = elements * SafetensorsDType.GetElementSize(dtype);
        Page page;
        if (DeviceResidentBytes + bytes <= deviceBudget)
        {
            page = new Page(PageTier.Device, dtype, elements, bytes, device, zeros(elements, dtype, device).DetachFromDisposeScope(), 0);
            DeviceResidentBytes += bytes;
            Track(bytes);
        }
        else if (hostBudget is not { } limit || HostBytes + bytes <= limit)
        {
            page = new Page(PageTier.Host, dtype, elements, bytes, device, HostBuffer(dtype, elements, device, zero: true).DetachFromDisposeScope(), 0);
            HostBytes += bytes;
        }
        else
        {
            page = new Page(PageTier.Spilled, dtype, elements, bytes, device, null, spillBytes);
            spillBytes += (bytes + SpillAlignment - 1) / SpillAlignment * SpillAlignment;
            SpilledBytes += bytes;
            largestSpilled[dtype] = Math.Max(largestSpilled.GetValueOrDefault(dtype), elements);
        }

        pages.Add(page);
        return page;
    }

    /// <summary>Brings a page to its device. Device-tier pages are lent as they are; others as a copy that <see cref="PageLease.Commit"/> writes back.</summary>
    /// <param name="page">The page.</param>
    /// <returns>The lease; dispose it to release the device copy.</returns>
    public PageLease Checkout(Page page)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (page.Tier == PageTier.Device)
        {
            return new PageLease(this, page, page.Data!.alias(), tracked: false);
        }

        var staged = empty(page.Elements, page.DType, page.Device);
        Read(page, staged);
        Track(page.Bytes);
        return new PageLease(this, page, staged, tracked: true);
    }

    /// <summary>Copies a page's values into <paramref name="destination"/> (same element count, any device).</summary>
    public void Read(Page page, Tensor destination)
    {
        if (page.Tier != PageTier.Spilled)
        {
            destination.copy_(page.Data!);
            return;
        }

        using var host = Staging(page);
        new ReadOnlySpan<byte>(SpillBase() + page.Offset, checked((int)page.Bytes)).CopyTo(host.bytes);
        destination.copy_(host);
    }

    /// <summary>Stores <paramref name="source"/> (same element count, any device) as the page's values.</summary>
    public void Write(Page page, Tensor source)
    {
        if (page.Tier != PageTier.Spilled)
        {
            page.Data!.copy_(source);
            return;
        }

        using var host = Staging(page);
        host.copy_(source);
        host.bytes.CopyTo(new Span<byte>(SpillBase() + page.Offset, checked((int)page.Bytes)));
    }

    /// <summary>Counts <paramref name="bytes"/> more (or fewer, when negative) of optimizer state on a device.</summary>
    public void Track(long bytes)
    {
        DeviceBytes += bytes;
        DevicePeakBytes = Math.Max(DevicePeakBytes, DeviceBytes);
    }

    /// <summary>Starts a new peak at the current <see cref="DeviceBytes"/>.</summary>
    public void ResetPeak() => DevicePeakBytes = DeviceBytes;

    /// <summary>Frees every page and deletes the spill file.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        foreach (var page in pages)
        {
            page.Data?.Dispose();
        }

        foreach (var buffer in spillStaging.Values)
        {
            buffer.Dispose();
        }

        if (view is not null)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
        }

        map?.Dispose();
        if (SpillFilePath is { } path && File.Exists(path))
        {
            File.Delete(path);
        }

        SpillFilePath = null;
    }

    /// <summary>A host buffer for a page of a parameter on <paramref name="device"/>: pinned when the device is a GPU (if the backend can pin).</summary>
    private static Tensor HostBuffer(ScalarType dtype, long elements, Device device, bool zero)
    {
        var buffer = zero ? zeros(elements, dtype, CPU) : empty(elements, dtype, CPU);
        if (device.type != DeviceType.CUDA)
        {
            return buffer;
        }

        try
        {
            var pinned = buffer.pin_memory();
            buffer.Dispose();
            return pinned;
        }
        catch (ExternalException)
        {
            return buffer;
        }
    }

    /// <summary>A view of the host buffer (one per element type, as large as the largest spilled page, pinned for GPU parameters) that spilled pages pass through.</summary>
    private Tensor Staging(Page page)
    {
        if (!spillStaging.TryGetValue(page.DType, out var buffer))
        {
            buffer = HostBuffer(page.DType, largestSpilled[page.DType], page.Device, zero: false).DetachFromDisposeScope();
            spillStaging[page.DType] = buffer;
        }

        return buffer.narrow(0, 0, page.Elements);
    }

    /// <summary>The start of the mapped spill file, creating the file (zero-filled, deleted on close) on first use.</summary>
    private byte* SpillBase()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        if (map is null)
        {
            Directory.CreateDirectory(spillDirectory);
            var path = Path.Combine(spillDirectory, $"ftcore-optimizer-{Guid.NewGuid():N}.pages");
            var file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 4096, FileOptions.DeleteOnClose);
            try
            {
                file.SetLength(spillBytes);
                map = MemoryMappedFile.CreateFromFile(file, null, spillBytes, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
            }
            catch
            {
                file.Dispose();
                throw;
            }

            SpillFilePath = path;
            view = map.CreateViewAccessor(0, spillBytes, MemoryMappedFileAccess.ReadWrite);
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            spillBase = pointer + view.PointerOffset;
        }

        return spillBase;
    }
}

/// <summary>A page brought to its device: <see cref="Tensor"/> holds its values; <see cref="Commit"/> stores changes.</summary>
internal sealed class PageLease : IDisposable
{
    private readonly PageStore store;
    private readonly Page page;
    private readonly bool tracked;
    private bool disposed;

    public PageLease(PageStore store, Page page, Tensor tensor, bool tracked)
    {
        this.store = store;
        this.page = page;
        this.tracked = tracked;
        Tensor = tensor;
    }

    /// <summary>The page's values on its device (the page itself for device-tier pages).</summary>
    public Tensor Tensor { get; }

    /// <summary>Writes the device copy back to the page's tier (nothing to do for device-tier pages).</summary>
    public void Commit()
    {
        if (page.Tier != PageTier.Device)
        {
            store.Write(page, Tensor);
        }
    }

    /// <summary>Releases the device copy.</summary>
    public void Dispose()
    {
        if (!disposed)
        {
            disposed = true;
            Tensor.Dispose();
            if (tracked)
            {
                store.Track(-page.Bytes);
            }
        }
    }
}
