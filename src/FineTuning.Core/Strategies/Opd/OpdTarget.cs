using TorchSharp.Modules;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>One selectable tensor: the weight or bias of a projection (or of an untied head).</summary>
/// <param name="Name">The parameter's name in the base model, e.g. <c>model.layers.0.self_attn.q_proj.weight</c>.</param>
/// <param name="Slot">The Linear slot, e.g. <c>model.layers.0.self_attn.q_proj</c>.</param>
/// <param name="IsBias">Whether it is the bias.</param>
/// <param name="Layer">The decoder layer index, or <c>null</c> for the head.</param>
/// <param name="Module">The projection's short name (<c>q_proj</c>, …, <c>lm_head</c>).</param>
/// <param name="Parameter">The base parameter.</param>
internal sealed record OpdTarget(string Name, string Slot, bool IsBias, int? Layer, string Module, Parameter Parameter)
{
    public long Count => Parameter.numel();

    public long Rows => Parameter.shape[0];

    /// <summary>Selectable tensors of a model: the projections' weights and biases of every decoder layer, and the head when asked.</summary>
    public static List<OpdTarget> Find(Models.CausalLanguageModel model, bool includeHead)
    {
        var result = new List<OpdTarget>();
        const string layerPrefix = "model.layers.";
        foreach (var slot in model.LinearSlots())
        {
            var isHead = slot.FullName == "lm_head";
            if (!slot.FullName.StartsWith(layerPrefix, StringComparison.Ordinal) && !(isHead && includeHead))
            {
                continue;
            }

            if (slot.Module is not Linear linear)
            {
                throw new InvalidOptionException(
                    isHead ? $"{nameof(OpdOptions)}.{nameof(OpdOptions.IncludeHead)}" : "method",
                    isHead && slot.Module is Models.TiedLinear
                        ? "the head is tied to the input embeddings; OPD selects untied heads only."
                        : $"OPD trains selected weights of plain Linear layers; '{slot.FullName}' is a {slot.Module.GetType().Name} (a 4-bit or already wrapped layer). Load the full-precision model without other adapters.");
            }

            int? layer = isHead ? null : int.Parse(slot.FullName.AsSpan(layerPrefix.Length, slot.FullName.IndexOf('.', layerPrefix.Length) - layerPrefix.Length), System.Globalization.CultureInfo.InvariantCulture);
            var module = slot.FullName[(slot.FullName.LastIndexOf('.') + 1)..];
            result.Add(new OpdTarget(slot.FullName + ".weight", slot.FullName, false, layer, module, linear.weight!));
            if (linear.bias is { } bias)
            {
                result.Add(new OpdTarget(slot.FullName + ".bias", slot.FullName, true, layer, module, bias));
            }
        }

        return result;
    }
}
