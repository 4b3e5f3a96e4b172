using TorchSharp.Modules;

namespace FineTuning.Core.Strategies;

/// <summary>A parameter with its full name in the model (for example <c>model.layers.0.self_attn.q_proj.lora_A.default.weight</c>).</summary>
/// <param name="Name">The full name, as <c>named_parameters()</c> reports it.</param>
/// <param name="Parameter">The parameter.</param>
public sealed record NamedParameter(string Name, Parameter Parameter);
