using FineTuning.Core.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Quantization;

/// <summary>
/// A Linear layer with a 4-bit weight, laid out as bitsandbytes' <c>Linear4bit</c>: the buffer <c>weight</c> holds the
/// packed codes (uint8 [(out·in + 1) / 2, 1], not a trainable parameter), <see cref="QuantState"/> the scales and code
/// table, and <c>bias</c> an ordinary parameter.
/// </summary>
/// <remarks>
/// <para>Forward: the input is cast to <see cref="ComputeDType"/>, multiplied by the weight dequantized to that dtype
/// (plus the bias), and the result cast back to the input's dtype (as bitsandbytes does).</para>
/// <para>Backward gives a gradient to the input only (<c>grad · W</c>), never to the 4-bit weight; the bias gets its
/// gradient when it requires one. No full-precision copy of the weight is kept between forward and backward: a custom
/// autograd function dequantizes again in backward, so the graph holds only the layer.</para>
/// <para><c>Module.to(dtype)</c> casts the bias only; <c>to(device)</c> moves the codes and the state too.</para>
/// </remarks>
public sealed class Linear4Bit : nn.Module<Tensor, Tensor>, IQuantizedLinear
{
#pragma warning disable IDE1006 // field names are bitsandbytes' parameter names
    private readonly Tensor weight;
    private readonly Parameter? bias;
#pragma warning restore IDE1006
    private QuantState state;

    /// <summary>Builds the layer from a quantized weight, which it takes ownership of.</summary>
    /// <param name="quantized">A quantized [out, in] weight.</param>
    /// <param name="bias">The bias [out] (copied), or <c>null</c>.</param>
    /// <param name="computeDType">The dtype of the forward computation: BFloat16, Float16 or Float32.</param>
    /// <param name="biasRequiresGrad">Whether the bias is trainable.</param>
    /// <exception cref="ArgumentException">The weight is not 2-D, the codes do not match its shape, the bias has the wrong size, or the compute dtype is not a float type.</exception>
    public Linear4Bit(BlockwiseQuantized4Bit quantized, Tensor? bias = null, ScalarType computeDType = ScalarType.BFloat16, bool biasRequiresGrad = false)
        : base(nameof(Linear4Bit))
    {
        ArgumentNullException.ThrowIfNull(quantized);
        var shape = quantized.State.Shape;
        if (shape.Count != 2)
        {
            throw new ArgumentException($"A 4-bit Linear needs a 2-D [out, in] weight, got shape [{string.Join(", ", shape)}].", nameof(quantized));
        }

        var n = shape[0] * shape[1];
        if (quantized.Packed.dtype != ScalarType.Byte || quantized.Packed.numel() != (n + 1) / 2)
        {
            throw new ArgumentException($"The packed weight must be {(n + 1) / 2} uint8 values for [{shape[0]}, {shape[1]}], got {quantized.Packed.numel()} {quantized.Packed.dtype}.", nameof(quantized));
        }

        if (computeDType is not (ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float32))
        {
            throw new ArgumentException($"The compute dtype must be BFloat16, Float16 or Float32, got {computeDType}.", nameof(computeDType));
        }

        if (bias is not null && (bias.dim() != 1 || bias.shape[0] != shape[0]))
        {
            throw new ArgumentException($"The bias must be [{shape[0]}], got [{string.Join(", ", bias.shape)}].", nameof(bias));
        }

        OutFeatures = shape[0];
        InFeatures = shape[1];
        ComputeDType = computeDType;
        // The layer owns the tensors from now on: none may go with a dispose scope that was open when they were made.
        if (quantized.Packed.dim() == 2 && quantized.Packed.shape[1] == 1)
        {
            weight = quantized.Packed;
        }
        else
        {
            weight = quantized.Packed.view((n + 1) / 2, 1);
            quantized.Packed.Dispose();
        }

        weight.DetachFromDisposeScope();
        state = quantized.State;
        foreach (var held in new[] { state.Absmax, state.Code, state.Offset, state.Nested?.Absmax, state.Nested?.Code })
        {
            held?.DetachFromDisposeScope();
        }

        if (bias is not null)
        {
            using var _ = no_grad();
            this.bias = new Parameter(bias.detach().clone().DetachFromDisposeScope(), biasRequiresGrad);
        }

        RegisterComponents();
    }

    /// <summary>Quantizes an existing Linear (which is left untouched) with the given settings.</summary>
    /// <param name="linear">The layer; its weight must hold values (not on the meta device).</param>
    /// <param name="options">Type, block size, double quantization and compute dtype; <see cref="QuantizationOptions.Default"/> when <c>null</c>.</param>
    /// <returns>The 4-bit layer, on the Linear's device; the bias keeps its requires_grad flag.</returns>
    /// <exception cref="InvalidOptionException">The options are invalid.</exception>
    /// <exception cref="ArgumentException">The weight is on the meta device or not fp32/bf16/fp16.</exception>
    public static Linear4Bit FromLinear(Linear linear, QuantizationOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(linear);
        options ??= QuantizationOptions.Default;
        options.Validate();
        var source = linear.weight ?? throw new ArgumentException("The Linear has no weight.", nameof(linear));
        var quantized = Blockwise4BitQuantizer.Quantize(source, options.Type, options.BlockSize, options.DoubleQuant);
        var result = new Linear4Bit(quantized, linear.bias, options.ComputeDType, linear.bias?.requires_grad ?? false);
        result.train(linear.training);
        return result;
    }

    /// <inheritdoc />
    public long InFeatures { get; }

    /// <inheritdoc />
    public long OutFeatures { get; }

    /// <summary>The dtype the forward pass computes in.</summary>
    public ScalarType ComputeDType { get; }

    /// <summary>The packed codes, uint8 [(out·in + 1) / 2, 1] (the <c>weight</c> buffer).</summary>
    public Tensor PackedWeight => weight;

    /// <summary>The scales, code table, shape and dtype of the weight.</summary>
    public QuantState QuantState => state;

    /// <summary>The 4-bit data type.</summary>
    public QuantizationType Type => state.Type;

    /// <summary>Weights per block.</summary>
    public int BlockSize => state.BlockSize;

    /// <summary>Whether the scales are double-quantized.</summary>
    public bool IsDoubleQuantized => state.IsNested;

    /// <inheritdoc />
    public Tensor? Bias => bias;

    /// <inheritdoc />
    public Device Device => weight.device;

    /// <summary>Bytes held by the weight: packed codes, absmax (or its 8-bit codes, offset and second level) and code tables; the bias is not included.</summary>
    public long StorageBytes => weight.numel() * weight.element_size() + state.StorageBytes;

    /// <summary>Weight storage per weight element in bits: 4 + 32/blocksize without double quantization (4.5 at 64), about 4 + 8/64 + 32/(64·256) ≈ 4.127 with it, plus the tables.</summary>
    public double BitsPerParameter => StorageBytes * 8.0 / (InFeatures * OutFeatures);

    /// <inheritdoc />
    public Tensor Dequantize(ScalarType? dtype = null) => Blockwise4BitQuantizer.Dequantize(weight, state, dtype);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">The tensor is not [out, in] or not a float tensor.</exception>
    public void Requantize(Tensor weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.dim() != 2 || weight.shape[0] != OutFeatures || weight.shape[1] != InFeatures)
        {
            throw new ArgumentException($"Expected a [{OutFeatures}, {InFeatures}] weight, got [{string.Join(", ", weight.shape)}].", nameof(weight));
        }

        using var _ = no_grad();
        var quantized = Blockwise4BitQuantizer.Quantize(weight.to(state.DType), state.Type, state.BlockSize, state.IsNested);
        using (quantized.Packed)
        {
            this.weight.copy_(quantized.Packed.view(this.weight.shape));
        }

        var previous = state;
        state = quantized.State;
        previous.Dispose();
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        var output = DequantizingMatmul.apply(input.to(ComputeDType), this);
        if (bias is not null)
        {
            output = output + bias.to(ComputeDType);
        }

        return output.to(input.dtype).MoveToOuterDisposeScope();
    }

    /// <summary>Moves the state with the codes; the dtype conversion applies to the bias only.</summary>
    /// <inheritdoc />
    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking)
    {
        MoveState(device);
        return base._to(device, dtype, non_blocking);
    }

    /// <summary>Moves the state with the codes.</summary>
    /// <inheritdoc />
    protected override nn.Module _to(DeviceType deviceType, int deviceIndex, bool non_blocking)
    {
        MoveState(new Device(deviceType, deviceIndex));
        return base._to(deviceType, deviceIndex, non_blocking);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            state.Dispose();
        }

        base.Dispose(disposing);
    }

    private void MoveState(Device device)
    {
        // to() on the current device returns aliases, so moving unconditionally is safe.
        var previous = state;
        state = state.To(device);
        previous.Dispose();
    }

    /// <summary>
    /// <c>x · dequantize(W)ᵀ</c> with a backward that dequantizes again (<c>grad · W</c>) instead of keeping W: the
    /// graph node holds the layer, not a full-precision weight. The exception is activation checkpointing's re-run of a
    /// layer (<see cref="LayerRecomputation"/>), whose backward follows at once: there the node keeps the dequantized
    /// weight, saving a third dequantization per step at the cost of one layer's weights for a moment. No gradient for
    /// the 4-bit weight.
    /// </summary>
    private sealed class DequantizingMatmul : autograd.SingleTensorFunction<DequantizingMatmul>
    {
        public override string Name => nameof(DequantizingMatmul);

        public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var input = (Tensor)vars[0];
            var layer = (Linear4Bit)vars[1];
            var dequantized = layer.Dequantize(input.dtype);
            var keep = LayerRecomputation.IsActive;
            ctx.save_data("layer", layer);
            ctx.save_data("kept", keep);
            if (keep)
            {
                // Activation checkpointing's re-run: this layer's backward comes next, so keep the weight for it. The
                // saved handle must stay undisposed; the re-run's dispose scope frees it after that backward.
                ctx.save_for_backward([dequantized]);
                return nn.functional.linear(input, dequantized);
            }

            using (dequantized)
            {
                return nn.functional.linear(input, dequantized);
            }
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
        {
            var layer = (Linear4Bit)ctx.get_data("layer");
            Tensor inputGrad;
            using (var scope = NewDisposeScope())
            {
                var weight = (bool)ctx.get_data("kept") ? ctx.get_saved_variables()[0] : layer.Dequantize(grad_output.dtype);
                inputGrad = grad_output.matmul(weight).MoveToOuterDisposeScope();
            }

            return [inputGrad, null!];
        }
    }
}
