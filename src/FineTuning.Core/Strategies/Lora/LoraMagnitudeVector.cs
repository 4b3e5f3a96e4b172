using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>DoRA's magnitude (one value per output row), held as a module so its parameter is named <c>lora_magnitude_vector.{adapter}.weight</c> as in PEFT.</summary>
internal sealed class LoraMagnitudeVector : nn.Module
{
#pragma warning disable IDE1006 // the field name is PEFT's parameter name
    private readonly Parameter weight;
#pragma warning restore IDE1006

    /// <summary>Takes ownership of <paramref name="value"/> (a fresh tensor of shape [out_features]).</summary>
    public LoraMagnitudeVector(Tensor value) : base(nameof(LoraMagnitudeVector))
    {
        weight = new Parameter(value, requires_grad: false);
        weight.DetachFromDisposeScope();
        RegisterComponents();
    }

    public Parameter Weight => weight;
}
