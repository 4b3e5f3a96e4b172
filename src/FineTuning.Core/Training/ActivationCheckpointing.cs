using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Training;

/// <summary>
/// Reentrant activation checkpointing for decoder layers (PyTorch's <c>checkpoint(use_reentrant=True)</c>):
/// the forward pass keeps only each layer's input; backward runs the layer again with gradients on and
/// back-propagates through the recomputation. Install <see cref="Runner"/> as <see cref="CausalLanguageModel.LayerRunner"/>.
/// </summary>
/// <remarks>
/// The CPU random-number state is saved before each layer and restored for its recomputation, so dropout draws the
/// same masks twice (CUDA's generator is not replayed: use dropout 0 there). Layers run directly when gradients are
/// off, the layer is in evaluation mode, a KV cache is in use, or nothing in the layer or its input needs a gradient.
/// </remarks>
internal static class ActivationCheckpointing
{
    /// <summary>The layer runner to install on a model.</summary>
    public static Func<DecoderLayer, Tensor, AttentionContext, Tensor> Runner { get; } = Run;

    private static Tensor Run(DecoderLayer layer, Tensor hidden, AttentionContext context)
    {
        if (!is_grad_enabled() || !layer.training || context.Cache is not null)
        {
            return layer.Forward(hidden, context);
        }

        if (!hidden.requires_grad)
        {
            if (!layer.parameters().Any(p => p.requires_grad))
            {
                return layer.Forward(hidden, context);
            }

            // The function is only part of the graph when an input needs a gradient (frozen embeddings give none);
            // without this, the layer's own parameters would get no gradient.
            hidden = hidden.detach().requires_grad_(true);
        }

        return CheckpointedLayer.apply(hidden, layer, context);
    }

    private sealed class CheckpointedLayer : autograd.SingleTensorFunction<CheckpointedLayer>
    {
        public override string Name => nameof(CheckpointedLayer);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var hidden = (Tensor)vars[0];
            var layer = (DecoderLayer)vars[1];
            var context = (AttentionContext)vars[2];

            // Saved variables are held by the graph node, so the shared rotary tables and mask outlive the
            // forward pass's dispose scope until backward.
            ctx.save_for_backward([hidden, context.Cos, context.Sin, context.Mask!]);
            ctx.save_data("layer", layer);
            ctx.save_data("causal", context.IsCausal);
            using (var state = get_rng_state())
            {
                ctx.save_data("rng", state.data<byte>().ToArray());
            }

            return layer.Forward(hidden, context);
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            Tensor inputGrad;
            using (var scope = NewDisposeScope())
            {
                var saved = ctx.get_saved_variables();
                var layer = (DecoderLayer)ctx.get_data("layer");
                var context = new AttentionContext(saved[1], saved[2], saved[3], (bool)ctx.get_data("causal"), null);
                var input = saved[0].detach().requires_grad_(true);
                var current = get_rng_state();
                set_rng_state(tensor((byte[])ctx.get_data("rng")));
                try
                {
                    using var gradMode = enable_grad();
                    Tensor output;
                    using (LayerRecomputation.Enter())
                    {
                        output = layer.Forward(input, context);
                    }

                    autograd.backward([output], [grad_output]);
                }
                finally
                {
                    set_rng_state(current);
                }

                // Everything the recomputation allocated goes with this scope; the input gradient goes to the caller's.
                inputGrad = input.grad!.MoveToOuterDisposeScope();
            }

            return [inputGrad, null!, null!];
        }
    }
}
