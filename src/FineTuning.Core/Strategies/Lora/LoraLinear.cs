using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// A Linear with LoRA adapters, laid out as PEFT's <c>lora.Linear</c> so parameter names are PEFT's: the original
/// layer is the child <c>base_layer</c>, and <c>lora_A</c>, <c>lora_B</c>, <c>lora_dropout</c> and (DoRA)
/// <c>lora_magnitude_vector</c> hold one entry per adapter name, e.g.
/// <c>model.layers.0.self_attn.q_proj.lora_A.default.weight</c>.
/// </summary>
/// <remarks>
/// <para>Forward: <c>base(x) + Σ_active B(A(dropout(x)))·scaling</c>. The input is cast to the adapter dtype and the
/// sum back to the base output's dtype, as PEFT does. Merged or disabled: <c>base(x)</c> only.</para>
/// <para>DoRA (PEFT's <c>DoraLinearLayer</c>): with <c>n = ‖W + scaling·B·A‖</c> per output row, computed without
/// gradient, the update is <c>(m/n − 1)·r + (m/n)·B(A(x))·scaling</c>, where <c>r</c> is the running result without
/// the base bias (or <c>W·dropout(x)</c> while dropout is active in training).</para>
/// <para>Merging adds <c>ΔW = scaling·B·A</c>, computed in fp32, to the base weight (DoRA: <c>W' = m/‖W+ΔW‖·(W+ΔW)</c>
/// with the norm kept for an exact inverse); unmerging undoes the merges in reverse order.</para>
/// </remarks>
public sealed class LoraLinear : nn.Module<Tensor, Tensor>
{
#pragma warning disable IDE1006 // field names are PEFT's module names
    private nn.Module<Tensor, Tensor> base_layer;
    private readonly AdapterModuleDict<Linear> lora_A = new();
    private readonly AdapterModuleDict<Linear> lora_B = new();
    private readonly AdapterModuleDict<nn.Module<Tensor, Tensor>> lora_dropout = new();
    private readonly AdapterModuleDict<LoraMagnitudeVector> lora_magnitude_vector = new();
#pragma warning restore IDE1006
    private readonly Dictionary<string, LoraLayerConfig> configs = new(StringComparer.Ordinal);
    private readonly List<string> merged = [];
    private readonly Dictionary<string, Tensor> doraMergeNorms = new(StringComparer.Ordinal);
    private IReadOnlyList<string> active = [];
    private bool disabled;
    private Tensor? weightBeforeMutation;

    /// <summary>
    /// Wraps a Linear, a tied head or a quantized layer (<see cref="Quantization.IQuantizedLinear"/>, e.g. a 4-bit
    /// <see cref="Quantization.Linear4Bit"/> for QLoRA); the wrapper has no adapter yet. On a quantized base, merging
    /// dequantizes, adds the update and quantizes again (lossy, as PEFT does), and PiSSA is refused.
    /// </summary>
    /// <param name="baseLayer">The layer to adapt; it becomes the child <c>base_layer</c>.</param>
    /// <exception cref="ArgumentException">The layer is not a Linear.</exception>
    public LoraLinear(nn.Module<Tensor, Tensor> baseLayer) : base(nameof(LoraLinear))
    {
        base_layer = LinearWeights.RequireSupported(baseLayer, "LoRA", nameof(baseLayer));
        RegisterComponents();
        (OutFeatures, InFeatures) = LinearWeights.Shape(baseLayer);
        train(baseLayer.training);
    }

    /// <summary>The wrapped layer.</summary>
    public nn.Module<Tensor, Tensor> BaseLayer => base_layer;

    /// <summary>The base layer's weight, [out, in].</summary>
    /// <exception cref="NotSupportedException">The base is quantized (read it with <see cref="Quantization.IQuantizedLinear.Dequantize"/>).</exception>
    public Tensor BaseWeight => LinearWeights.Weight(base_layer);

    /// <summary>The base layer's input size.</summary>
    public long InFeatures { get; }

    /// <summary>The base layer's output size.</summary>
    public long OutFeatures { get; }

    /// <summary>The adapters this layer holds, in the order they were added.</summary>
    public IReadOnlyList<string> AdapterNames => lora_A.Keys;

    /// <summary>The adapters that take part in the forward pass (names this layer lacks are ignored).</summary>
    public IReadOnlyList<string> ActiveAdapters => active;

    /// <summary>The adapters merged into the base weight, oldest first.</summary>
    public IReadOnlyList<string> MergedAdapters => merged;

    /// <summary>Whether any adapter is merged into the base weight.</summary>
    public bool IsMerged => merged.Count > 0;

    /// <summary>
    /// When set, the forward pass is the base layer's alone; setting it unmerges merged adapters first (as PEFT's
    /// forward does).
    /// </summary>
    public bool AdaptersDisabled
    {
        get => disabled;
        set
        {
            if (value && IsMerged)
            {
                Unmerge();
            }

            disabled = value;
        }
    }

    /// <summary>Whether the layer holds an adapter of that name.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns><c>true</c> when present.</returns>
    public bool HasAdapter(string adapter) => configs.ContainsKey(adapter);

    /// <summary>The settings of an adapter.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>The settings.</returns>
    public LoraLayerConfig GetConfig(string adapter) => configs.TryGetValue(adapter, out var config)
        ? config
        : throw new KeyNotFoundException($"This layer has no adapter '{adapter}'; it has: {string.Join(", ", AdapterNames)}.");

    /// <summary>The A matrix of an adapter (<c>lora_A.{adapter}</c>, weight [r, in]).</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraA(string adapter) => lora_A[Require(adapter)];

    /// <summary>The B matrix of an adapter (<c>lora_B.{adapter}</c>, weight [out, r]).</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>The Linear.</returns>
    public Linear LoraB(string adapter) => lora_B[Require(adapter)];

    /// <summary>The DoRA magnitude of an adapter ([out]), or <c>null</c> for a plain LoRA adapter.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>The parameter or <c>null</c>.</returns>
    public Parameter? Magnitude(string adapter) =>
        lora_magnitude_vector.TryGet(Require(adapter), out var magnitude) ? magnitude.Weight : null;

    /// <summary>
    /// Adds an adapter (not active until <see cref="SetActiveAdapters"/>), on the base weight's device, and
    /// initialises it unless the device is <c>meta</c>. PiSSA replaces the base weight by its residual (the first
    /// time, the original is kept for <see cref="RestoreMutatedBaseWeight"/>).
    /// </summary>
    /// <param name="adapter">A name without dots.</param>
    /// <param name="config">The settings.</param>
    /// <param name="generator">The random generator for the init (global one when <c>null</c>).</param>
    /// <exception cref="ArgumentException">The name is invalid or taken, PiSSA's rank exceeds the weight's, or PiSSA is asked on a quantized base.</exception>
    public void AddAdapter(string adapter, LoraLayerConfig config, Generator? generator = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        LoraStrategy.ValidateAdapterName(adapter);
        if (configs.ContainsKey(adapter))
        {
            throw new ArgumentException($"The layer already has an adapter named '{adapter}'.", nameof(adapter));
        }

        if (config.Init == LoraInit.Pissa && config.R > Math.Min(InFeatures, OutFeatures))
        {
            throw new ArgumentException($"PiSSA needs r ≤ min(in, out) = {Math.Min(InFeatures, OutFeatures)}, got r = {config.R}.", nameof(config));
        }

        if (config.Init == LoraInit.Pissa && base_layer is Quantization.IQuantizedLinear)
        {
            throw new ArgumentException("PiSSA needs a float32, float16 or bfloat16 base weight, not a quantized one; initialise it in full precision, then quantize the residual model.", nameof(config));
        }

        var device = LinearWeights.Device(base_layer);
        var isMeta = LinearWeights.IsMeta(base_layer);
        var a = nn.Linear(InFeatures, config.R, hasBias: false, device: device, dtype: config.DType);
        var b = nn.Linear(config.R, OutFeatures, hasBias: false, device: device, dtype: config.DType);
        nn.Module<Tensor, Tensor> dropout = config.Dropout > 0 ? nn.Dropout(config.Dropout) : nn.Identity();
        foreach (var module in new nn.Module[] { a, b, dropout })
        {
            module.train(training);
        }

        lora_A.Add(adapter, a);
        lora_B.Add(adapter, b);
        lora_dropout.Add(adapter, dropout);
        configs[adapter] = config;
        if (!isMeta)
        {
            Initialize(adapter, config, generator);
        }

        if (config.UseDora)
        {
            var magnitude = isMeta ? empty(OutFeatures, dtype: config.DType, device: device) : InitialMagnitude(adapter);
            lora_magnitude_vector.Add(adapter, new LoraMagnitudeVector(magnitude));
        }
    }

    /// <summary>Removes an adapter and frees its weights.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <exception cref="InvalidOperationException">The adapter is merged.</exception>
    public void DeleteAdapter(string adapter)
    {
        Require(adapter);
        if (merged.Contains(adapter))
        {
            throw new InvalidOperationException($"Adapter '{adapter}' is merged into the base weight; unmerge before deleting it.");
        }

        lora_A.Remove(adapter).Dispose();
        lora_B.Remove(adapter).Dispose();
        lora_dropout.Remove(adapter).Dispose();
        if (lora_magnitude_vector.Contains(adapter))
        {
            lora_magnitude_vector.Remove(adapter).Dispose();
        }

        configs.Remove(adapter);
        active = active.Where(name => name != adapter).ToArray();
    }

    /// <summary>Sets the adapters used by the forward pass (PEFT sums all active adapters).</summary>
    /// <param name="adapters">Adapter names; those this layer lacks are ignored.</param>
    public void SetActiveAdapters(IEnumerable<string> adapters)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        active = adapters.ToArray();
    }

    /// <summary>The update of an adapter, <c>ΔW = scaling·B·A</c>, in fp32, [out, in]. The caller owns the tensor.</summary>
    /// <param name="adapter">The adapter name.</param>
    /// <returns>A new tensor.</returns>
    public Tensor DeltaWeight(string adapter)
    {
        var scaling = GetConfig(adapter).Scaling;
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var delta = LoraB(adapter).weight!.to(ScalarType.Float32).matmul(LoraA(adapter).weight!.to(ScalarType.Float32)) * scaling;
        return delta.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Adds the adapters' updates to the base weight (default: the active adapters not merged yet), computing in fp32
    /// and rounding once to the base dtype.
    /// </summary>
    /// <param name="adapters">The adapters to merge; <c>null</c> = the active ones.</param>
    /// <param name="safeMerge">Compute each merged weight on a copy and refuse it when it holds NaN or infinity.</param>
    /// <exception cref="InvalidOperationException">The base is a tied head, or (safe merge) the result is not finite.</exception>
    public void Merge(IEnumerable<string>? adapters = null, bool safeMerge = false)
    {
        if (base_layer is Models.TiedLinear)
        {
            throw new InvalidOperationException("Cannot merge into a head tied to the input embeddings: the merge would change the embeddings too.");
        }

        var isMeta = LinearWeights.IsMeta(base_layer);
        foreach (var adapter in (adapters ?? active).Where(configs.ContainsKey).ToArray())
        {
            if (merged.Contains(adapter) || isMeta)
            {
                continue;
            }

            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var delta = DeltaWeight(adapter);
            var sum = LinearWeights.Read(base_layer).to(ScalarType.Float32) + delta;
            Tensor result;
            if (Magnitude(adapter) is { } magnitude)
            {
                var norm = linalg.vector_norm(sum, dims: [1]);
                result = (magnitude.to(ScalarType.Float32) / norm).view(-1, 1) * sum;
                doraMergeNorms[adapter] = norm.DetachFromDisposeScope();
            }
            else
            {
                result = sum;
            }

            if (safeMerge && !result.isfinite().all().item<bool>())
            {
                if (doraMergeNorms.Remove(adapter, out var norm))
                {
                    norm.Dispose();
                }

                throw new InvalidOperationException($"NaNs detected in the merged weights. The adapter '{adapter}' seems to be broken.");
            }

            LinearWeights.Write(base_layer, result);
            merged.Add(adapter);
        }
    }

    /// <summary>Subtracts the merged adapters' updates, most recent first. fp32 weights come back within rounding (about 1e-7 relative), not bit for bit.</summary>
    public void Unmerge()
    {
        while (merged.Count > 0)
        {
            var adapter = merged[^1];
            merged.RemoveAt(merged.Count - 1);
            using var _ = no_grad();
            using var scope = NewDisposeScope();
            var delta = DeltaWeight(adapter);
            var current = LinearWeights.Read(base_layer).to(ScalarType.Float32);
            if (doraMergeNorms.Remove(adapter, out var norm))
            {
                using (norm)
                {
                    var factor = (Magnitude(adapter)!.to(ScalarType.Float32) / norm).view(-1, 1);
                    LinearWeights.Write(base_layer, current / factor - delta);
                }
            }
            else
            {
                LinearWeights.Write(base_layer, current - delta);
            }
        }
    }

    /// <inheritdoc />
    public override Tensor forward(Tensor input)
    {
        if (disabled || IsMerged || !active.Any(configs.ContainsKey))
        {
            return base_layer.call(input);
        }

        using var scope = NewDisposeScope();
        var result = base_layer.call(input);
        var resultType = result.dtype;
        foreach (var adapter in active.Where(configs.ContainsKey))
        {
            var config = configs[adapter];
            var a = lora_A[adapter];
            var b = lora_B[adapter];
            var dropout = lora_dropout[adapter];
            var x = input.to(a.weight!.dtype);
            if (!config.UseDora)
            {
                result = result + b.call(a.call(dropout.call(x))) * config.Scaling;
                continue;
            }

            // PEFT reuses the running result as the base output unless dropout is active (training with p > 0).
            Tensor? baseResult = dropout is Identity || !training ? result : null;
            if (baseResult is null)
            {
                x = dropout.call(x);
            }

            result = result + DoraUpdate(adapter, config, x, baseResult);
        }

        return result.to(resultType).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Puts another layer of the same shape in place of <c>base_layer</c> (QLoRA swaps a 4-bit base for its dequantized
    /// Linear before merging) and returns the previous one, which the caller owns. Only while nothing is merged.
    /// </summary>
    internal nn.Module<Tensor, Tensor> ReplaceBaseLayer(nn.Module<Tensor, Tensor> replacement)
    {
        LinearWeights.RequireSupported(replacement, "LoRA", nameof(replacement));
        if (LinearWeights.Shape(replacement) != (OutFeatures, InFeatures) || IsMerged)
        {
            throw new InvalidOperationException($"The replacement base must be [{OutFeatures}, {InFeatures}] and the layer unmerged.");
        }

        // Registering appends: unregister every child and register them again in order, so base_layer stays first.
        var children = named_children().ToList();
        foreach (var (name, _) in children)
        {
            register_module(name, null!);
        }

        foreach (var (name, module) in children)
        {
            register_module(name, name == nameof(base_layer) ? replacement : module);
        }

        var previous = base_layer;
        base_layer = replacement;
        return previous;
    }

    /// <summary>Puts back the base weight as it was before a PiSSA init mutated it (no-op otherwise).</summary>
    internal void RestoreMutatedBaseWeight()
    {
        if (weightBeforeMutation is { } original)
        {
            using (no_grad())
            {
                BaseWeight.copy_(original);
            }

            original.Dispose();
            weightBeforeMutation = null;
        }
    }

    /// <summary>Frees every adapter's weights (when the wrapper is discarded); the base layer is left alone.</summary>
    internal void DisposeAdapters()
    {
        foreach (var adapter in AdapterNames.ToArray())
        {
            merged.Remove(adapter);
            DeleteAdapter(adapter);
        }

        foreach (var norm in doraMergeNorms.Values)
        {
            norm.Dispose();
        }

        doraMergeNorms.Clear();
        weightBeforeMutation?.Dispose();
        weightBeforeMutation = null;
    }

    private Tensor DoraUpdate(string adapter, LoraLayerConfig config, Tensor x, Tensor? baseResult)
    {
        var a = lora_A[adapter];
        var b = lora_B[adapter];
        var weight = LinearWeights.Read(base_layer).to(x.dtype);
        Tensor norm;
        using (no_grad())
        {
            // The norm is detached (DoRA paper §4.3), so the LoRA weight inside it needs no gradient either.
            var loraWeight = b.weight!.matmul(a.weight!);
            norm = linalg.vector_norm(weight + config.Scaling * loraWeight, dims: [1]);
        }

        var scale = (Magnitude(adapter)! / norm).view(1, -1);
        var loraResult = b.call(a.call(x));
        if (baseResult is not null)
        {
            if (LinearWeights.Bias(base_layer) is { } bias)
            {
                baseResult = baseResult - bias;
            }
        }
        else
        {
            baseResult = nn.functional.linear(x, weight);
        }

        return (scale - 1) * baseResult + scale * loraResult * config.Scaling;
    }

    private void Initialize(string adapter, LoraLayerConfig config, Generator? generator)
    {
        using var _ = no_grad();
        var a = lora_A[adapter].weight!;
        var b = lora_B[adapter].weight!;
        switch (config.Init)
        {
            case LoraInit.Default:
                // kaiming_uniform_(a=√5): gain √(2/6), bound = √3·gain/√fan_in = 1/√fan_in.
                a.uniform_(-1 / Math.Sqrt(InFeatures), 1 / Math.Sqrt(InFeatures), generator);
                b.zero_();
                break;
            case LoraInit.Gaussian:
                a.normal_(0, 1.0 / config.R, generator);
                b.zero_();
                break;
            case LoraInit.Random:
                a.uniform_(-1 / Math.Sqrt(InFeatures), 1 / Math.Sqrt(InFeatures), generator);
                b.uniform_(-1 / Math.Sqrt(config.R), 1 / Math.Sqrt(config.R), generator);
                break;
            case LoraInit.Pissa:
                InitializePissa(a, b, config, generator);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(config), config.Init, "Unknown LoRA init.");
        }
    }

    private void InitializePissa(Tensor a, Tensor b, LoraLayerConfig config, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var weight = BaseWeight;
        weightBeforeMutation ??= weight.detach().clone().DetachFromDisposeScope();
        var w = weight.to(ScalarType.Float32);
        Tensor u, s, vh;
        if (config.PissaNiter is { } niter)
        {
            (u, s, var v) = LowRankSvd(w, config.R, niter, generator);
            vh = v.t();
        }
        else
        {
            (u, s, vh) = linalg.svd(w, fullMatrices: false);
        }

        var root = (s.narrow(0, 0, config.R) / config.Scaling).sqrt();
        var aValue = root.unsqueeze(1) * vh.narrow(0, 0, config.R);
        var bValue = u.narrow(1, 0, config.R) * root.unsqueeze(0);
        a.copy_(aValue);
        b.copy_(bValue);
        weight.copy_(w - config.Scaling * bValue.matmul(aValue));
    }

    private Tensor InitialMagnitude(string adapter)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var config = configs[adapter];
        var sum = LinearWeights.Read(base_layer).to(ScalarType.Float32) + DeltaWeight(adapter);
        return linalg.vector_norm(sum, dims: [1]).to(config.DType).clone().DetachFromDisposeScope();
    }

    /// <summary>PyTorch's <c>svd_lowrank(A, q, niter)</c> (Halko et al.): a randomized range finder, then an SVD of the projection.</summary>
    private static (Tensor U, Tensor S, Tensor V) LowRankSvd(Tensor matrix, int q, int niter, Generator? generator)
    {
        var transposed = matrix.shape[0] < matrix.shape[1];
        var x = transposed ? matrix.t() : matrix;
        var probe = randn([x.shape[1], q], dtype: x.dtype, device: x.device, generator: generator);
        var basis = linalg.qr(x.matmul(probe)).Q;
        for (var i = 0; i < niter; i++)
        {
            basis = linalg.qr(x.t().matmul(basis)).Q;
            basis = linalg.qr(x.matmul(basis)).Q;
        }

        var (u, s, vh) = linalg.svd(basis.t().matmul(x), fullMatrices: false);
        var left = basis.matmul(u);
        var right = vh.t();
        return transposed ? (right, s, left) : (left, s, right);
    }

    private string Require(string adapter) => HasAdapter(adapter)
        ? adapter
        : throw new KeyNotFoundException($"This layer has no adapter '{adapter}'; it has: {string.Join(", ", AdapterNames)}.");
}
