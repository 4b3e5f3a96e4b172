using FineTuning.Core.Backend;
using FineTuning.Core.Models;
using TorchSharp;
using TorchSharp.Modules;

namespace FineTuning.Core.Quantization;

/// <summary>
/// Quantizes a model's projections to 4 bits in place (what Transformers does when loading with
/// <c>BitsAndBytesConfig(load_in_4bit=True)</c>): every Linear in <see cref="CausalLanguageModel.LinearSlots"/> except
/// <c>lm_head</c> and <see cref="QuantizationOptions.SkipModules"/> becomes a <see cref="Linear4Bit"/>; embeddings
/// and norms are never quantized.
/// </summary>
public static class ModelQuantizer
{
    /// <summary>Replaces the projections with 4-bit layers and frees the full-precision weights.</summary>
    /// <param name="model">The model, with real weights (not on the meta device) and no adapters attached yet.</param>
    /// <param name="options">The settings; <see cref="QuantizationOptions.Default"/> (NF4, double quantization, blocks of 64, bf16 compute) when <c>null</c>.</param>
    /// <returns>The full names of the quantized modules, in model order (slots already 4-bit are left alone and not listed).</returns>
    /// <exception cref="InvalidOptionException">The options are invalid.</exception>
    /// <exception cref="InvalidOperationException">A projection is wrapped (LoRA, modules_to_save): quantize before adding adapters.</exception>
    public static IReadOnlyList<string> Quantize(CausalLanguageModel model, QuantizationOptions? options = null)
    {
        var replaced = QuantizeKeepingOriginals(model, options);
        DisposeOriginals(model, replaced);
        return replaced.Select(r => r.Name).ToArray();
    }

    /// <summary>Quantizes like <see cref="Quantize"/> but hands back the full-precision layers it replaced (the caller owns them).</summary>
    /// <param name="model">The model.</param>
    /// <param name="options">The settings; <see cref="QuantizationOptions.Default"/> when <c>null</c>.</param>
    /// <returns>The full names of the quantized modules and the Linear layers they held, in model order.</returns>
    internal static IReadOnlyList<(string Name, Linear Original)> QuantizeKeepingOriginals(CausalLanguageModel model, QuantizationOptions? options)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= QuantizationOptions.Default;
        options.Validate();
        var targets = new List<(string Name, Linear Linear)>();
        foreach (var slot in model.LinearSlots())
        {
            if (options.IsSkipped(slot.FullName) || slot.Module is Linear4Bit)
            {
                continue;
            }

            if (slot.Module is not Linear linear)
            {
                throw new InvalidOperationException($"Cannot quantize '{slot.FullName}': it holds a {slot.Module.GetType().Name}, not a Linear. Quantize the model before adding adapters.");
            }

            targets.Add((slot.FullName, linear));
        }

        foreach (var (name, linear) in targets)
        {
            model.ReplaceModule(name, Linear4Bit.FromLinear(linear, options));
        }

        return targets;
    }

    /// <summary>Frees the full-precision layers quantization replaced and, on the CPU, returns their memory to the system.</summary>
    internal static void DisposeOriginals(CausalLanguageModel model, IEnumerable<(string Name, Linear Original)> replaced)
    {
        foreach (var (_, original) in replaced)
        {
            original.Dispose();
        }

        if (model.Device.type == DeviceType.CPU)
        {
            NativeHeap.Trim();
        }
    }

    /// <summary>The settings of a model's 4-bit layers (those of the first one; <see cref="QuantizedModelFiles.Save"/> requires them to agree).</summary>
    /// <param name="model">The model.</param>
    /// <returns>Type, double quantization, block size and compute dtype, or <c>null</c> when the model has no 4-bit layer.</returns>
    public static QuantizationOptions? Describe(CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return model.named_modules().Select(m => m.module).OfType<Linear4Bit>().FirstOrDefault() is { } layer
            ? new QuantizationOptions { Type = layer.Type, DoubleQuant = layer.IsDoubleQuantized, BlockSize = layer.BlockSize, ComputeDType = layer.ComputeDType }
            : null;
    }
}
