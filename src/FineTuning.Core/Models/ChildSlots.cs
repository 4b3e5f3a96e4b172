using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>Shared bookkeeping for <see cref="IReplaceableChildren"/>: a named set of module slots kept in sync with registration.</summary>
internal sealed class ChildSlots(nn.Module owner, Action<string, nn.Module<Tensor, Tensor>> assignField)
{
    private readonly Dictionary<string, nn.Module<Tensor, Tensor>> slots = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Names => slots.Keys.ToArray();

    public void Add(string name, nn.Module<Tensor, Tensor> module) => slots[name] = module;

    public nn.Module<Tensor, Tensor> Get(string name) =>
        slots.TryGetValue(name, out var module) ? module : throw new ArgumentException($"'{name}' is not a replaceable child; known: {string.Join(", ", slots.Keys)}", nameof(name));

    public nn.Module<Tensor, Tensor> Replace(string name, nn.Module<Tensor, Tensor> replacement)
    {
        var previous = Get(name);

        // Registering appends, so unregister this child and every later one (null is TorchSharp's way to
        // unregister) and register them again in order: the replacement keeps its place in the module order, and
        // named_parameters() keeps the model's order (as PyTorch's setattr does).
        var later = owner.named_children().SkipWhile(child => child.name != name).ToList();
        foreach (var (child, _) in later)
        {
            owner.register_module(child, null!);
        }

        foreach (var (child, module) in later)
        {
            owner.register_module(child, child == name ? replacement : module);
        }

        slots[name] = replacement;
        assignField(name, replacement);
        return previous;
    }
}
