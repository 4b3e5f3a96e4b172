using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// PEFT's per-adapter <c>ModuleDict</c> (children named by adapter, e.g. <c>lora_A.default</c>). Unlike TorchSharp's
/// <c>ModuleDict</c>, entries added or removed after construction are registered and unregistered at once.
/// </summary>
internal sealed class AdapterModuleDict<T>() : nn.Module("ModuleDict")
    where T : nn.Module
{
    private readonly List<string> order = [];
    private readonly Dictionary<string, T> items = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Keys => order;

    public T this[string name] => items[name];

    public bool Contains(string name) => items.ContainsKey(name);

    public bool TryGet(string name, out T module) => items.TryGetValue(name, out module!);

    public void Add(string name, T module)
    {
        register_module(name, module);
        items.Add(name, module);
        order.Add(name);
    }

    public T Remove(string name)
    {
        var module = items[name];
        register_module(name, null!); // TorchSharp's way to unregister a child
        items.Remove(name);
        order.Remove(name);
        return module;
    }
}
