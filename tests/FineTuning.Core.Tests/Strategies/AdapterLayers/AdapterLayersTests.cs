using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.AdapterLayers;
using FineTuning.Core.Tests.Models;
using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static FineTuning.Core.Tests.Strategies.Lora.LoraTestKit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.AdapterLayers;

/// <summary>Bottleneck adapters: parameter counts, the forward pass, the inits, training, save/load, removal and the KV cache.</summary>
public class AdapterLayersTests
{
    internal static AdapterLayersStrategy Apply(CausalLanguageModel model, AdapterLayersOptions? options = null, string name = AdapterLayersOptions.DefaultAdapterName)
    {
        var strategy = new AdapterLayersStrategy(options, name);
        strategy.Apply(model, StrategyContext.Empty);
        return strategy;
    }

    /// <summary>Gives every adapter weight and bias random values, so the adapters change the output.</summary>
    internal static void Randomize(AdapterLayersStrategy strategy, long seed = 7, double std = 0.3)
    {
        var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var p in strategy.Layers.SelectMany(l => l.parameters()))
        {
            p.normal_(0, std, generator);
        }
    }

    // Llama-2-7B: hidden 4096, 32 layers, 6,738,415,616 base parameters. Reduction factor 16 → d = 4096 / 16 = 256.
    // One adapter: down weight 4096·256 = 1,048,576, down bias 256, up weight 256·4096 = 1,048,576, up bias 4096
    // → 2,101,504. Pfeiffer (after the MLP): 32 adapters → 67,248,128; Houlsby (attention and MLP): 64 → 134,496,256.
    // PEFT's "all params" includes the adapters: 6,738,415,616 + 67,248,128 = 6,805,663,744 (0.9881 %), and
    // 6,738,415,616 + 134,496,256 = 6,872,911,872 (1.9569 %).
    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer, "trainable params: 67,248,128 || all params: 6,805,663,744 || trainable%: 0.9881")]
    [InlineData(AdapterPlacement.Houlsby, "trainable params: 134,496,256 || all params: 6,872,911,872 || trainable%: 1.9569")]
    public void Llama2_7B_counts_on_the_meta_device(AdapterPlacement placement, string expected)
    {
        using var model = CausalLanguageModel.Create(ModelConfig.Parse(PublishedConfigs.Llama2_7B), META, ScalarType.BFloat16);
        var strategy = Apply(model, new AdapterLayersOptions { Placement = placement });
        Assert.Equal(expected, model.CountParameters().ToPeftLine());
        Assert.All(strategy.TrainableParameters(), p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        Assert.Equal(placement == AdapterPlacement.Pfeiffer ? 32 * 4 : 64 * 4, strategy.TrainableParameters().Count);
    }

    // Tiny model: hidden 32, 2 layers. d = ⌊32 / rf⌋ (at least 1); per adapter 32·d + d + d·32 + 32.
    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer, 16.0, new int[0], 2 * ((32 * 2) + 2 + (2 * 32) + 32))] // d 2: 162 each
    [InlineData(AdapterPlacement.Houlsby, 16.0, new int[0], 4 * 162)]
    [InlineData(AdapterPlacement.Pfeiffer, 4.0, new int[0], 2 * ((32 * 8) + 8 + (8 * 32) + 32))] // d 8: 552 each
    [InlineData(AdapterPlacement.Houlsby, 64.0, new int[0], 4 * ((32 * 1) + 1 + (1 * 32) + 32))] // ⌊0.5⌋ = 0 → d 1: 97 each
    [InlineData(AdapterPlacement.Pfeiffer, 0.5, new int[0], 2 * ((32 * 64) + 64 + (64 * 32) + 32))] // d 64 (wider than hidden)
    [InlineData(AdapterPlacement.Pfeiffer, 3.0, new int[0], 2 * ((32 * 10) + 10 + (10 * 32) + 32))] // ⌊10.67⌋ = 10
    [InlineData(AdapterPlacement.Houlsby, 16.0, new[] { 0 }, 2 * 162)]
    public void Trainable_counts_follow_the_formula_on_a_tiny_model(AdapterPlacement placement, double reductionFactor, int[] leaveOut, long expected)
    {
        using var model = TinyModels.Create();
        var before = model.CountParameters().Total;
        var strategy = Apply(model, new AdapterLayersOptions { Placement = placement, ReductionFactor = reductionFactor, LeaveOut = leaveOut });
        var counts = model.CountParameters();
        Assert.Equal(expected, counts.Trainable);
        Assert.Equal(before + expected, counts.Total);
        Assert.Equal(expected, strategy.TrainableParameters().Sum(p => p.Parameter.numel()));
        Assert.Equal(expected, AdapterLayersStrategy.ParametersPerAdapter(32, strategy.Layers[0].Adapter.BottleneckSize) * strategy.Layers.Count);
    }

    [Fact]
    public void Parameter_names_are_AdapterHubs_under_the_seams()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby }, "task");
        Assert.Equal(
            [
                "model.layers.0.attention_adapter.adapters.task.adapter_down.0.weight", "model.layers.0.attention_adapter.adapters.task.adapter_down.0.bias",
                "model.layers.0.attention_adapter.adapters.task.adapter_up.weight", "model.layers.0.attention_adapter.adapters.task.adapter_up.bias",
                "model.layers.0.mlp_adapter.adapters.task.adapter_down.0.weight", "model.layers.0.mlp_adapter.adapters.task.adapter_down.0.bias",
                "model.layers.0.mlp_adapter.adapters.task.adapter_up.weight", "model.layers.0.mlp_adapter.adapters.task.adapter_up.bias",
            ],
            strategy.TrainableParameters().Take(8).Select(p => p.Name));
        Assert.Equal("model.layers.1.output_adapters.adapters.task.adapter_up.bias", AdapterHubFiles.ToAdapterHubKey("model.layers.1.mlp_adapter.adapters.task.adapter_up.bias"));
        Assert.Equal("model.layers.1.attention_adapters.adapters.task.adapter_down.0.weight", AdapterHubFiles.ToAdapterHubKey("model.layers.1.attention_adapter.adapters.task.adapter_down.0.weight"));
        Assert.All(model.named_parameters().Where(p => !p.name.Contains("_adapter.", StringComparison.Ordinal)), p => Assert.False(p.parameter.requires_grad, p.name));
    }

    [Fact]
    public void One_adapter_computes_AdapterHubs_formula_by_hand()
    {
        // h 2, d 1, relu, scaling 0.5: down w [1, −1] b 0.5, up w [2, 3]ᵀ b [0.25, −0.25].
        var options = new AdapterLayersOptions { ReductionFactor = 2, Scaling = 0.5 };
        using var adapter = new BottleneckAdapter(2, 1, options, CPU);
        using (no_grad())
        {
            adapter.Down.weight!.copy_(tensor(new float[] { 1, -1 }).view(1, 2));
            adapter.Down.bias!.copy_(tensor(new float[] { 0.5f }));
            adapter.Up.weight!.copy_(tensor(new float[] { 2, 3 }).view(2, 1));
            adapter.Up.bias!.copy_(tensor(new float[] { 0.25f, -0.25f }));
        }

        var m = tensor(new float[] { 1, 2 }).view(1, 1, 2); // sublayer output
        var h = tensor(new float[] { 3, -1 }).view(1, 1, 2); // residual stream
        // original_ln_before (Pfeiffer): x = m + h = [4, 1]; down: 4 − 1 + 0.5 = 3.5, relu 3.5; up: [7.25, 10.25]; ·0.5 = [3.625, 5.125];
        // out = m + that = [4.625, 7.125].
        using var before = new BottleneckAdapterLayer("default", adapter, originalLnBefore: true, residualBeforeLn: true);
        Assert.Equal([4.625f, 7.125f], before.Forward(m, h).data<float>().ToArray());
        // residual_before_ln false: the adapter's residual is x itself → [4, 1] + [3.625, 5.125].
        using var xResidual = new BottleneckAdapterLayer("default", adapter, originalLnBefore: true, residualBeforeLn: false);
        Assert.Equal([7.625f, 6.125f], xResidual.Forward(m, h).data<float>().ToArray());
        // Houlsby-style (x = m = [1, 2]): down 1 − 2 + 0.5 = −0.5, relu 0; up = bias [0.25, −0.25]·0.5 → out [1.125, 1.875].
        using var plain = new BottleneckAdapterLayer("default", adapter, originalLnBefore: false, residualBeforeLn: true);
        Assert.Equal([1.125f, 1.875f], plain.Forward(m, h).data<float>().ToArray());
    }

    [Fact]
    public void The_decoder_layer_gives_residual_aware_adapters_the_stream_entering_each_sublayer()
    {
        using var model = TinyModels.Create();
        using var _ = NewDisposeScope();
        var layer = model.Body.Layers[0];
        var attention = new Recorder();
        var mlp = new Recorder();
        layer.AttentionOutputAdapter = attention;
        layer.MlpOutputAdapter = mlp;
        var ids = Ids();
        var embeddings = model.Body.EmbedTokens.call(ids);
        model.call(ModelInput.FromIds(ids));
        Assert.True(BitEqual(embeddings, attention.Residual!), "the attention adapter sees the layer input");
        Assert.True(BitEqual(embeddings + attention.Output!, mlp.Residual!), "the MLP adapter sees the stream after the attention add");
    }

    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer, ScalarType.Float32)]
    [InlineData(AdapterPlacement.Houlsby, ScalarType.Float32)]
    [InlineData(AdapterPlacement.Pfeiffer, ScalarType.BFloat16)]
    [InlineData(AdapterPlacement.Houlsby, ScalarType.BFloat16)]
    public void Identity_init_leaves_the_logits_bit_identical(AdapterPlacement placement, ScalarType dtype)
    {
        // The up-projection's weight and bias are zero, so each adapter adds exactly 0 to its residual (the sublayer
        // output, cast to fp32 and back, both exact): no tolerance is needed in fp32 or bf16.
        using var model = TinyModels.Create(dtype: dtype);
        using var expected = Logits(model);
        var strategy = Apply(model, new AdapterLayersOptions { Placement = placement });
        using var actual = Logits(model);
        Assert.True(BitEqual(expected, actual));
        foreach (var layer in strategy.Layers)
        {
            Assert.Equal(0, layer.Adapter.Up.weight!.abs().max().item<float>());
            Assert.Equal(0, layer.Adapter.Up.bias!.abs().max().item<float>());
            Assert.Equal(0, layer.Adapter.Down.bias!.abs().max().item<float>());
            var down = layer.Adapter.Down.weight!;
            Assert.True(down.abs().max().item<float>() <= 1 / Math.Sqrt(32), "kaiming_uniform(a=√5) bound 1/√fan_in");
            Assert.True(down.std().item<float>() > 0.5 / Math.Sqrt(3 * 32), "the down-projection is random, not zero");
        }
    }

    [Theory]
    [InlineData(AdapterInit.Bert, 0.02)]
    [InlineData(AdapterInit.Houlsby, 0.0088)] // std 0.01 truncated at ±2σ: 0.01·√(1 − 4φ(2)/(2Φ(2) − 1)) ≈ 0.0088
    public void Bert_and_Houlsby_inits_change_the_logits(AdapterInit init, double std)
    {
        using var model = TinyModels.Create();
        using var expected = Logits(model);
        var strategy = Apply(model, new AdapterLayersOptions { Init = init, ReductionFactor = 1 });
        using var actual = Logits(model);
        Assert.False(BitEqual(expected, actual));
        var weights = cat(strategy.Layers.SelectMany(l => new[] { l.Adapter.Down.weight!.flatten(), l.Adapter.Up.weight!.flatten() }).ToArray());
        Assert.Equal(std, weights.std().item<float>(), 0.0008); // 8,192 samples
        if (init == AdapterInit.Houlsby)
        {
            Assert.True(weights.abs().max().item<float>() <= 0.02f);
        }
    }

    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer, ScalarType.Float32)]
    [InlineData(AdapterPlacement.Houlsby, ScalarType.BFloat16)]
    public void Training_moves_only_the_adapters(AdapterPlacement placement, ScalarType dtype)
    {
        using var model = TinyModels.Create(dtype: dtype);
        var baseWeights = Snapshot(model);
        var strategy = Apply(model, new AdapterLayersOptions { Placement = placement, ReductionFactor = 4 });
        var trainable = strategy.TrainableParameters();
        using var optimizer = optim.AdamW(trainable.Select(p => p.Parameter), lr: 1e-2);
        model.train();
        var ids = Ids();
        double first = 0, last = 0;
        for (var step = 0; step < 8; step++)
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var logits = model.call(ModelInput.FromIds(ids)).Logits;
            var loss = nn.functional.cross_entropy(logits.narrow(1, 0, 5).reshape(-1, 97), ids.narrow(1, 1, 5).reshape(-1));
            loss.backward();
            optimizer.step();
            (step == 0 ? ref first : ref last) = loss.item<float>();
        }

        Assert.True(last < first, $"loss {first} → {last}");
        Assert.All(trainable, p => Assert.Equal(ScalarType.Float32, p.Parameter.dtype));
        Assert.All(strategy.Layers, l => Assert.True(l.Adapter.Up.weight!.abs().max().item<float>() > 0));
        foreach (var (name, p) in model.named_parameters().Where(p => baseWeights.ContainsKey(p.name)))
        {
            Assert.True(BitEqual(baseWeights[name], p), name);
            Assert.Null(p.grad);
        }
    }

    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer)]
    [InlineData(AdapterPlacement.Houlsby)]
    public void Remove_restores_the_base_bit_for_bit(AdapterPlacement placement)
    {
        using var model = TinyModels.Create();
        model.named_parameters().First().parameter.requires_grad = false; // a flag that is not the default comes back too
        var flags = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.requires_grad);
        var weights = Snapshot(model);
        using var expected = Logits(model);
        var strategy = Apply(model, new AdapterLayersOptions { Placement = placement });
        Randomize(strategy);
        using (var changed = Logits(model))
        {
            Assert.False(BitEqual(expected, changed));
        }

        strategy.Remove();
        Assert.Null(strategy.Model);
        Assert.All(model.Body.Layers, l => Assert.Null(l.MlpOutputAdapter ?? l.AttentionOutputAdapter));
        Assert.Equal(weights.Keys, model.named_parameters().Select(p => p.name));
        Assert.All(model.named_parameters(), p => Assert.True(BitEqual(weights[p.name], p.parameter) && flags[p.name] == p.parameter.requires_grad, p.name));
        using var actual = Logits(model);
        Assert.True(BitEqual(expected, actual));
    }

    [Fact]
    public void Merging_is_refused_with_a_reason()
    {
        using var model = TinyModels.Create();
        var strategy = Apply(model, AdapterLayersOptions.Default, "default");
        Assert.False(strategy.SupportsMerge);
        var e = Assert.Throws<NotSupportedException>(strategy.MergeAndUnload);
        Assert.Contains("non-linearity", e.Message, StringComparison.Ordinal);
        Assert.Same(model, strategy.Model);
    }

    [Theory]
    [InlineData(AdapterPlacement.Pfeiffer, ScalarType.Float32)]
    [InlineData(AdapterPlacement.Houlsby, ScalarType.Float32)]
    [InlineData(AdapterPlacement.Pfeiffer, ScalarType.BFloat16)]
    public void Kv_cache_decoding_equals_full_recomputation_with_adapters(AdapterPlacement placement, ScalarType dtype)
    {
        using var model = TinyModels.Create(dtype: dtype);
        Randomize(Apply(model, new AdapterLayersOptions { Placement = placement, ReductionFactor = 4 }));
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = Ids();
        var full = model.call(ModelInput.FromIds(ids)).Logits;
        using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
        var steps = new List<Tensor> { model.call(new ModelInput { InputIds = ids.narrow(1, 0, 3), Cache = cache }).Logits };
        for (var t = 3; t < 6; t++)
        {
            steps.Add(model.call(new ModelInput { InputIds = ids.narrow(1, t, 1), Cache = cache }).Logits);
        }

        var incremental = cat(steps, dim: 1);
        var tolerance = dtype == ScalarType.Float32 ? 1e-5 : 2e-2; // as the base model's own cache test
        Assert.True(MaxDiff(incremental, full) <= tolerance, $"max diff {MaxDiff(incremental, full)}");
        using var plain = TinyModels.Create(dtype: dtype);
        Assert.True(MaxDiff(Logits(plain), full) > 10 * tolerance, "the adapters must matter for the test to mean anything");
    }

    [Fact]
    public void Save_then_load_reproduces_the_logits_bit_for_bit()
    {
        using var temp = new TempDirectory();
        using var model = TinyModels.Create(dtype: ScalarType.BFloat16);
        var strategy = Apply(model, new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby, ReductionFactor = 4, LeaveOut = [1] }, "wordmap");
        Randomize(strategy);
        using var expected = Logits(model);
        strategy.Save(temp.Path);

        using var fresh = TinyModels.Create(dtype: ScalarType.BFloat16);
        var loaded = AdapterLoader.Load(temp.Path, fresh);
        var adapters = Assert.IsType<AdapterLayersStrategy>(loaded);
        Assert.Equal("wordmap", adapters.AdapterName);
        Assert.Equal(AdapterPlacement.Houlsby, adapters.Options.Placement);
        Assert.Equal([1], adapters.Options.LeaveOut);
        Assert.Empty(adapters.TrainableParameters()); // loaded for inference
        using var actual = Logits(fresh);
        Assert.True(BitEqual(expected, actual));

        // Load into an already applied strategy (resuming a checkpoint) gives the same weights.
        using var third = TinyModels.Create(dtype: ScalarType.BFloat16);
        var again = Apply(third, strategy.Options, "wordmap");
        again.Load(temp.Path);
        using var reloaded = Logits(third);
        Assert.True(BitEqual(expected, reloaded));
    }

    [Fact]
    public void Options_out_of_range_name_the_option()
    {
        Assert.Equal("AdapterLayersOptions.ReductionFactor", Assert.Throws<InvalidOptionException>(() => new AdapterLayersStrategy(new AdapterLayersOptions { ReductionFactor = 0 })).Option);
        Assert.Equal("AdapterLayersOptions.Dropout", Assert.Throws<InvalidOptionException>(() => new AdapterLayersStrategy(new AdapterLayersOptions { Dropout = 1 })).Option);
        Assert.Equal("AdapterLayersOptions.LeaveOut", Assert.Throws<InvalidOptionException>(() => new AdapterLayersStrategy(new AdapterLayersOptions { LeaveOut = [-1] })).Option);
        using var model = TinyModels.Create();
        var strategy = new AdapterLayersStrategy(new AdapterLayersOptions { LeaveOut = [2] });
        Assert.Equal("AdapterLayersOptions.LeaveOut", Assert.Throws<InvalidOptionException>(() => strategy.Apply(model, StrategyContext.Empty)).Option);
        Assert.All(model.named_parameters(), p => Assert.True(p.parameter.requires_grad)); // left untouched
        Assert.Equal(AdapterNonLinearity.Swish, new AdapterLayersOptions { Placement = AdapterPlacement.Houlsby }.EffectiveNonLinearity);
        Assert.Equal(AdapterNonLinearity.Relu, AdapterLayersOptions.Default.EffectiveNonLinearity);
    }

    /// <summary>A residual-aware adapter that returns the sublayer output unchanged and keeps copies of what it saw.</summary>
    private sealed class Recorder() : nn.Module<Tensor, Tensor>(nameof(Recorder)), IResidualAwareAdapter
    {
        public Tensor? Output { get; private set; }

        public Tensor? Residual { get; private set; }

        public Tensor Forward(Tensor sublayerOutput, Tensor residual)
        {
            Output = sublayerOutput.detach().clone().DetachFromDisposeScope();
            Residual = residual.detach().clone().DetachFromDisposeScope();
            return sublayerOutput.alias();
        }

        public override Tensor forward(Tensor input) => throw new InvalidOperationException("The layer must call Forward(output, residual).");
    }
}
