using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// PEFT's <c>ModulesToSaveWrapper</c>: keeps the original module as <c>original_module</c> (frozen) and one trainable
/// full copy per adapter under <c>modules_to_save.{adapter}</c>; the forward pass uses the active adapter's copy, or
/// the original when adapters are disabled or no active adapter has a copy.
/// </summary>
public sealed class ModulesToSaveWrapper : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field names are PEFT's module names
    private readonly nn.Module<Tensor, Tensor> original_module;
    private readonly AdapterModuleDict<nn.Module<Tensor, Tensor>> modules_to_save = new();
#pragma warning restore IDE1006
    private IReadOnlyList<string> active = [];

    /// <summary>Wraps a module; copies are added per adapter with <see cref="AddAdapter"/>.</summary>
    /// <param name="original">The module (a Linear or a tied head).</param>
    public ModulesToSaveWrapper(nn.Module<Tensor, Tensor> original) : base(nameof(ModulesToSaveWrapper))
    {
        original_module = LinearWeights.RequireSupported(original, "modules_to_save", nameof(original));
        RegisterComponents();
        train(original.training);
    }

    /// <summary>The original module.</summary>
    public nn.Module<Tensor, Tensor> OriginalModule => original_module;

    /// <summary>The adapters that have a copy.</summary>
    public IReadOnlyList<string> AdapterNames => modules_to_save.Keys;

    /// <summary>When set, the original module runs.</summary>
    public bool AdaptersDisabled { get; set; }

    /// <summary>The copy of an adapter, or <c>null</c>.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>The copy or <c>null</c>.</returns>
    public nn.Module<Tensor, Tensor>? GetCopy(string adapter) => modules_to_save.TryGet(adapter, out var copy) ? copy : null;

    /// <summary>The copy the forward pass uses now, or <c>null</c> when it uses the original.</summary>
    public nn.Module<Tensor, Tensor>? ActiveCopy =>
        AdaptersDisabled ? null : active.Select(GetCopy).FirstOrDefault(copy => copy is not null);

    /// <summary>Adds a full copy of the original module for an adapter (a plain Linear, even for a tied head).</summary>
    /// <param name="adapter">The adapter name.</param>
    public void AddAdapter(string adapter)
    {
        var copy = LinearWeights.Copy(original_module);
        copy.train(training);
        modules_to_save.Add(adapter, copy);
    }

    /// <summary>Removes and frees an adapter's copy (no-op when it has none).</summary>
    /// <param name="adapter">The adapter name.</param>
    public void DeleteAdapter(string adapter)
    {
        if (modules_to_save.Contains(adapter))
        {
            modules_to_save.Remove(adapter).Dispose();
        }

        active = active.Where(name => name != adapter).ToArray();
    }

    /// <summary>Sets the active adapters; at most one of them may have a copy here.</summary>
    /// <param name="adapters">Adapter names.</param>
    /// <exception cref="InvalidOperationException">Several active adapters have a copy of this module.</exception>
    public void SetActiveAdapters(IEnumerable<string> adapters)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        var names = adapters.ToArray();
        var withCopies = names.Where(modules_to_save.Contains).ToArray();
        if (withCopies.Length > 1)
        {
            throw new InvalidOperationException($"Adapters {string.Join(", ", withCopies)} each have their own copy of a modules_to_save module; only one of them can be active.");
        }

        active = names;
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input) => (ActiveCopy ?? original_module).call(input);
}
