using FineTuning.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>Access to the weight and bias of the Linear kinds a model slot can hold (a <c>Linear</c> or a tied head).</summary>
internal static class LinearWeights
{
    public static bool IsSupported(nn.Module<Tensor, Tensor> module) => module is Linear or TiedLinear;

    /// <summary>Returns the module when it is a supported Linear, else throws naming what needed it.</summary>
    public static nn.Module<Tensor, Tensor> RequireSupported(nn.Module<Tensor, Tensor> module, string purpose, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(module, parameterName);
        return IsSupported(module) ? module : throw new ArgumentException($"{purpose} supports Linear layers; got a {module.GetType().Name}.", parameterName);
    }

    public static Tensor Weight(nn.Module<Tensor, Tensor> module) => module switch
    {
        Linear linear => linear.weight!,
        TiedLinear tied => tied.Weight,
        _ => throw new NotSupportedException($"LoRA wraps Linear layers; got a {module.GetType().Name}."),
    };

    public static Tensor? Bias(nn.Module<Tensor, Tensor> module) => module is Linear linear ? linear.bias : null;

    /// <summary>A new, independent Linear with copies of the module's weight (and bias), on the same device and dtype.</summary>
    public static Linear Copy(nn.Module<Tensor, Tensor> module)
    {
        var weight = Weight(module);
        var bias = Bias(module);
        var copy = nn.Linear(weight.shape[1], weight.shape[0], hasBias: bias is not null, device: weight.device, dtype: weight.dtype);
        if (!weight.is_meta)
        {
            using var _ = no_grad();
            copy.weight!.copy_(weight);
            copy.bias?.copy_(bias!);
        }

        return copy;
    }
}
