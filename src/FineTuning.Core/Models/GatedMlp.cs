using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Models;

/// <summary>The SwiGLU feed-forward block: <c>down_proj(silu(gate_proj(x)) * up_proj(x))</c>. Its projections are replaceable (seam 1).</summary>
public sealed class GatedMlp : nn.Module<Tensor, Tensor>, IReplaceableChildren
{
#pragma warning disable IDE1006 // field names are Hugging Face's parameter names
    private nn.Module<Tensor, Tensor> gate_proj;
    private nn.Module<Tensor, Tensor> up_proj;
    private nn.Module<Tensor, Tensor> down_proj;
#pragma warning restore IDE1006
    private readonly ChildSlots slots;

    /// <summary>Creates the MLP of one decoder layer.</summary>
    /// <param name="config">The model configuration.</param>
    /// <param name="device">Where the weights live.</param>
    /// <param name="dtype">The weight dtype.</param>
    /// <param name="projectionDevice">Where the projection Linears are built, when not on <paramref name="device"/> (<c>meta</c> for placeholders a loader replaces).</param>
    public GatedMlp(ModelConfig config, Device device, ScalarType dtype, Device? projectionDevice = null) : base(nameof(GatedMlp))
    {
        gate_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias, device: projectionDevice ?? device, dtype: dtype);
        up_proj = nn.Linear(config.HiddenSize, config.IntermediateSize, hasBias: config.MlpBias, device: projectionDevice ?? device, dtype: dtype);
        down_proj = nn.Linear(config.IntermediateSize, config.HiddenSize, hasBias: config.MlpBias, device: projectionDevice ?? device, dtype: dtype);
        RegisterComponents();
        slots = new ChildSlots(this, (name, module) =>
        {
            switch (name)
            {
                case "gate_proj": gate_proj = module; break;
                case "up_proj": up_proj = module; break;
                case "down_proj": down_proj = module; break;
            }
        });
        slots.Add("gate_proj", gate_proj);
        slots.Add("up_proj", up_proj);
        slots.Add("down_proj", down_proj);
    }

    /// <inheritdoc />
    public IReadOnlyList<string> ReplaceableChildNames => slots.Names;

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> GetChild(string name) => slots.Get(name);

    /// <inheritdoc />
    public nn.Module<Tensor, Tensor> ReplaceChild(string name, nn.Module<Tensor, Tensor> replacement) => slots.Replace(name, replacement);

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var gated = nn.functional.silu(gate_proj.call(input)) * up_proj.call(input);
        return down_proj.call(gated).MoveToOuterDisposeScope();
    }
}
