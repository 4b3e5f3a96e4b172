using FineTuning.Core.Models;
using FineTuning.Core.Quantization;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// Access to the weight and bias of the Linear kinds a model slot can hold: a <c>Linear</c>, a tied head, or a
/// quantized layer (<see cref="IQuantizedLinear"/>, read through dequantization and written by requantization).
/// </summary>
internal static class LinearWeights
{
    public static bool IsSupported(nn.Module<Tensor, Tensor> module) => module is Linear or TiedLinear or IQuantizedLinear;

    /// <summary>Returns the module when it is a supported Linear, else throws naming what needed it.</summary>
    public static nn.Module<Tensor, Tensor> RequireSupported(nn.Module<Tensor, Tensor> module, string purpose, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(module, parameterName);
        return IsSupported(module) ? module : throw new ArgumentException($"{purpose} supports Linear layers; got a {module.GetType().Name}.", parameterName);
    }

    /// <summary>The weight tensor itself; a quantized layer has none in full precision (use <see cref="Read"/>).</summary>
    public static Tensor Weight(nn.Module<Tensor, Tensor> module) => module switch
    {
        Linear linear => linear.weight!,
        TiedLinear tied => tied.Weight,
        IQuantizedLinear => throw new NotSupportedException($"The {module.GetType().Name} holds a quantized weight; read it with {nameof(IQuantizedLinear)}.{nameof(IQuantizedLinear.Dequantize)}()."),
        _ => throw new NotSupportedException($"LoRA wraps Linear layers; got a {module.GetType().Name}."),
    };

    /// <summary>[out, in] of the weight.</summary>
    public static (long Out, long In) Shape(nn.Module<Tensor, Tensor> module)
    {
        if (module is IQuantizedLinear quantized)
        {
            return (quantized.OutFeatures, quantized.InFeatures);
        }

        var weight = Weight(module);
        return (weight.shape[0], weight.shape[1]);
    }

    public static Device Device(nn.Module<Tensor, Tensor> module) => module is IQuantizedLinear quantized ? quantized.Device : Weight(module).device;

    public static bool IsMeta(nn.Module<Tensor, Tensor> module) => module is not IQuantizedLinear && Weight(module).is_meta;

    /// <summary>The weight for reading: the tensor itself, or a new dequantized tensor for a quantized layer (use inside a dispose scope).</summary>
    public static Tensor Read(nn.Module<Tensor, Tensor> module) => module is IQuantizedLinear quantized ? quantized.Dequantize() : Weight(module);

    /// <summary>Sets the weight's values (without recording gradients); a quantized layer requantizes them.</summary>
    public static void Write(nn.Module<Tensor, Tensor> module, Tensor values)
    {
        using var _ = no_grad();
        if (module is IQuantizedLinear quantized)
        {
            quantized.Requantize(values);
        }
        else
        {
            Weight(module).copy_(values);
        }
    }

    public static Tensor? Bias(nn.Module<Tensor, Tensor> module) => module switch
    {
        Linear linear => linear.bias,
        IQuantizedLinear quantized => quantized.Bias,
        _ => null,
    };

    /// <summary>
    /// A new, independent Linear with copies of the module's weight and bias, on the same device. A quantized layer's
    /// weight is dequantized in <paramref name="dequantizeAs"/> (default: its dtype before quantization).
    /// </summary>
    /// <param name="module">The layer.</param>
    /// <param name="dequantizeAs">The dtype a quantized weight is dequantized in before the copy.</param>
    /// <param name="dtype">The copy's dtype; default the weight's (as read).</param>
    public static Linear Copy(nn.Module<Tensor, Tensor> module, ScalarType? dequantizeAs = null, ScalarType? dtype = null)
    {
        var (outFeatures, inFeatures) = Shape(module);
        var bias = Bias(module);
        var weight = module is IQuantizedLinear quantized ? quantized.Dequantize(dequantizeAs) : Weight(module);
        try
        {
            var copy = nn.Linear(inFeatures, outFeatures, hasBias: bias is not null, device: weight.device, dtype: dtype ?? weight.dtype);
            if (!weight.is_meta)
            {
                using var _ = no_grad();
                copy.weight!.copy_(weight);
                copy.bias?.copy_(bias!);
            }

            return copy;
        }
        finally
        {
            if (module is IQuantizedLinear)
            {
                weight.Dispose();
            }
        }
    }
}
