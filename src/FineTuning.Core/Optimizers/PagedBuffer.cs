using static TorchSharp.torch;

namespace FineTuning.Core.Optimizers;

/// <summary>One flat state of one parameter (<see cref="Length"/> elements) in pages of a <see cref="PageStore"/>.</summary>
internal sealed class PagedBuffer
{
    private readonly PageStore store;
    private readonly Page[] pages;
    private readonly ScalarType dtype;

    /// <summary>Allocates the zeroed pages.</summary>
    /// <param name="store">Where the pages live.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="length">The element count.</param>
    /// <param name="pageElements">Elements per page (the last page may be shorter).</param>
    /// <param name="device">The device the state is updated on.</param>
    public PagedBuffer(PageStore store, ScalarType dtype, long length, long pageElements, Device device)
    {
        this.store = store;
        this.dtype = dtype;
        Length = length;
        PageElements = pageElements;
        var count = (int)((length + pageElements - 1) / pageElements);
        pages = new Page[count];
        for (var i = 0; i < count; i++)
        {
            pages[i] = store.Allocate(dtype, Math.Min(pageElements, length - (i * pageElements)), device);
        }
    }

    /// <summary>The element count.</summary>
    public long Length { get; }

    /// <summary>Elements per page.</summary>
    public long PageElements { get; }

    /// <summary>The bytes the pages hold, whatever their tier.</summary>
    public long Bytes => pages.Sum(p => p.Bytes);

    /// <summary>The pages' tiers.</summary>
    public IEnumerable<PageTier> Tiers => pages.Select(p => p.Tier);

    /// <summary>Brings page <paramref name="index"/> to the device.</summary>
    public PageLease Checkout(int index) => store.Checkout(pages[index]);

    /// <summary>The whole state as one new flat tensor on <paramref name="device"/>.</summary>
    public Tensor Gather(Device device)
    {
        var result = empty(Length, dtype, device);
        for (var i = 0; i < pages.Length; i++)
        {
            using var slice = result.narrow(0, i * PageElements, pages[i].Elements);
            store.Read(pages[i], slice);
        }

        return result;
    }

    /// <summary>Stores a flat tensor of <see cref="Length"/> elements (any device) as the state.</summary>
    public void Scatter(Tensor values)
    {
        for (var i = 0; i < pages.Length; i++)
        {
            using var slice = values.narrow(0, i * PageElements, pages[i].Elements);
            store.Write(pages[i], slice);
        }
    }
}
