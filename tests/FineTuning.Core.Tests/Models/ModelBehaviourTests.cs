using FineTuning.Core.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Models;

public class ModelBehaviourTests
{
    private static Tensor Ids(params long[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), [rows.Length, rows[0].Length], dtype: ScalarType.Int64);

    [Theory]
    [InlineData(ModelFamily.Llama)]
    [InlineData(ModelFamily.Qwen2)]
    public void Changing_token_t_leaves_earlier_logits_unchanged(ModelFamily family)
    {
        using var model = TinyModels.Create(TinyModels.Config(family));
        using var _ = NewDisposeScope();
        var a = Ids([5, 17, 33, 8, 61, 2, 90]);
        var b = a.clone();
        b[0, 4] = tensor(11L);
        var la = model.call(ModelInput.FromIds(a)).Logits;
        var lb = model.call(ModelInput.FromIds(b)).Logits;
        Assert.True(la.narrow(1, 0, 4).eq(lb.narrow(1, 0, 4)).all().item<bool>());
        Assert.False(la.narrow(1, 4, 1).allclose(lb.narrow(1, 4, 1)));
    }

    [Theory]
    [InlineData(false, ScalarType.Float32)]
    [InlineData(true, ScalarType.Float32)]
    [InlineData(false, ScalarType.BFloat16)]
    public void Kv_cache_decoding_equals_full_recomputation(bool tied, ScalarType dtype)
    {
        using var model = TinyModels.Create(TinyModels.Config(tied: tied), dtype);
        using var _ = NewDisposeScope();
        var ids = Ids([3, 14, 15, 92, 65, 35, 89, 79, 32, 38]);
        var full = model.call(ModelInput.FromIds(ids)).Logits;
        using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
        var first = model.call(new ModelInput { InputIds = ids.narrow(1, 0, 4), Cache = cache }).Logits;
        var steps = new List<Tensor> { first };
        for (var t = 4; t < 10; t++)
        {
            steps.Add(model.call(new ModelInput { InputIds = ids.narrow(1, t, 1), Cache = cache }).Logits);
        }

        var incremental = cat(steps, dim: 1);
        Assert.Equal(10, cache.Length);
        var tolerance = dtype == ScalarType.Float32 ? 1e-5 : 2e-2;
        Assert.True(incremental.allclose(full, rtol: 0, atol: tolerance), $"max diff {(incremental - full).abs().max().item<float>()}");
    }

    [Fact]
    public void Left_padding_does_not_change_the_real_tokens_logits()
    {
        using var model = TinyModels.Create();
        using var _ = NewDisposeScope();
        var ids = Ids([7, 8, 9, 10]);
        var alone = model.call(ModelInput.FromIds(ids)).Logits;
        var padded = Ids([0, 0, 7, 8, 9, 10], [4, 5, 6, 7, 8, 9]);
        var mask = Ids([0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]);
        var positions = Ids([0, 0, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]);
        var logits = model.call(new ModelInput { InputIds = padded, AttentionMask = mask, PositionIds = positions }).Logits;
        Assert.False(logits.isnan().any().item<bool>());
        Assert.True(logits[0].narrow(0, 2, 4).allclose(alone[0], rtol: 0, atol: 1e-5));
    }

    [Fact]
    public void Rms_norm_matches_a_hand_computed_value()
    {
        using var norm = new RmsNorm(4, 1e-6, CPU, ScalarType.Float32);
        using (no_grad())
        {
            norm.Weight.copy_(tensor(new[] { 1f, 2f, 0.5f, -1f }));
        }

        // x = [1, 2, 3, 4]: mean square = 30/4 = 7.5, 1/sqrt(7.5 + 1e-6) = 0.365148...
        using var y = norm.call(tensor(new[] { 1f, 2f, 3f, 4f }));
        var s = 1 / Math.Sqrt(7.5 + 1e-6);
        var expected = new[] { 1 * s * 1, 2 * s * 2, 3 * s * 0.5, 4 * s * -1 };
        Assert.Equal(expected, y.data<float>().ToArray().Select(v => (double)v), new ToleranceComparer(1e-6));
    }

    [Fact]
    public void Rotary_embedding_matches_hand_computed_rotation()
    {
        // head_dim 4, theta 10000: inv_freq = [1, 1/100]. Position 2: angles [2, 0.02].
        var inv = RotaryEmbedding.InverseFrequencies(4, 10000, null);
        Assert.Equal(new[] { 1.0, 0.01 }, inv.Select(v => (double)v), new ToleranceComparer(1e-7));
        var config = TinyModels.Config() with { HiddenSize = 8, NumAttentionHeads = 2, NumKeyValueHeads = 2 };
        using var rope = new RotaryEmbedding(config, CPU);
        var (cos, sin) = rope.Compute(tensor(new long[] { 2 }, [1, 1]));
        using var x = tensor(new[] { 1f, 2f, 3f, 4f }, [1, 1, 1, 4]);
        using var y = RotaryEmbedding.Apply(x, cos, sin);
        // rotate_half pairs channel i with i + d/2: (x0, x2) rotated by 2 rad, (x1, x3) by 0.02 rad.
        double c0 = Math.Cos(2), s0 = Math.Sin(2), c1 = Math.Cos(0.02), s1 = Math.Sin(0.02);
        var expected = new[] { 1 * c0 - 3 * s0, 2 * c1 - 4 * s1, 3 * c0 + 1 * s0, 4 * c1 + 2 * s1 };
        Assert.Equal(expected, y.data<float>().ToArray().Select(v => (double)v), new ToleranceComparer(1e-5));
        cos.Dispose();
        sin.Dispose();
    }

    [Fact]
    public void Llama3_rope_scaling_follows_the_published_rule()
    {
        var scaling = new RopeScaling("llama3", 8, 1, 4, 8192);
        var plain = RotaryEmbedding.InverseFrequencies(128, 500000, null);
        var scaled = RotaryEmbedding.InverseFrequencies(128, 500000, scaling);
        for (var i = 0; i < plain.Length; i++)
        {
            var wavelength = 2 * Math.PI / plain[i];
            if (wavelength < 8192 / 4.0)
            {
                Assert.Equal(plain[i], scaled[i]); // high frequency: unchanged
            }
            else if (wavelength > 8192 / 1.0)
            {
                Assert.Equal(plain[i] / 8, scaled[i], 1e-9); // low frequency: divided by the factor
            }
            else
            {
                Assert.InRange(scaled[i], plain[i] / 8 * (1 - 1e-6), plain[i] * (1 + 1e-6)); // smooth in between
            }
        }

        Assert.Equal(plain[0], scaled[0]);
        Assert.Equal(plain[^1] / 8, scaled[^1], 1e-9);
    }

    [Fact]
    public void Linear_slots_are_listed_by_full_name_and_replaceable()
    {
        using var model = TinyModels.Create();
        var slots = model.LinearSlots().Select(s => s.FullName).ToList();
        Assert.Equal(2 * 7 + 1, slots.Count);
        Assert.Contains("model.layers.1.self_attn.q_proj", slots);
        Assert.Contains("model.layers.0.mlp.down_proj", slots);
        Assert.Contains("lm_head", slots);

        using var _ = NewDisposeScope();
        var ids = Ids([1, 2, 3]);
        var before = model.call(ModelInput.FromIds(ids)).Logits;
        var original = (nn.Module<Tensor, Tensor>)model.LinearSlots().Single(s => s.FullName == "model.layers.0.self_attn.v_proj").Module;
        var wrapper = new Doubling(original);
        Assert.Same(original, model.ReplaceModule("model.layers.0.self_attn.v_proj", wrapper));
        var names = model.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.layers.0.self_attn.v_proj.base_layer.weight", names);
        Assert.DoesNotContain("model.layers.0.self_attn.v_proj.weight", names);
        var after = model.call(ModelInput.FromIds(ids)).Logits;
        Assert.False(after.allclose(before));
        model.ReplaceModule("model.layers.0.self_attn.v_proj", original);
        Assert.True(model.call(ModelInput.FromIds(ids)).Logits.eq(before).all().item<bool>());
    }

    [Fact]
    public void Sublayer_adapters_are_registered_and_applied()
    {
        using var model = TinyModels.Create();
        using var _ = NewDisposeScope();
        var ids = Ids([1, 2, 3]);
        var before = model.call(ModelInput.FromIds(ids)).Logits;
        var layer = model.Body.Layers[1];
        layer.MlpOutputAdapter = new Doubling(nn.Identity());
        Assert.Contains(model.named_modules(), m => m.name == "model.layers.1.mlp_adapter");
        Assert.False(model.call(ModelInput.FromIds(ids)).Logits.allclose(before));
        layer.MlpOutputAdapter = null;
        Assert.DoesNotContain(model.named_modules(), m => m.name == "model.layers.1.mlp_adapter");
        Assert.True(model.call(ModelInput.FromIds(ids)).Logits.eq(before).all().item<bool>());
    }

    [Fact]
    public void Attention_prefix_equals_having_the_prefix_tokens_in_front()
    {
        // Prefix keys/values taken from a cache over tokens P act exactly like P in front of the input.
        using var model = TinyModels.Create();
        using var _ = NewDisposeScope();
        var prefixTokens = Ids([11, 12, 13]);
        var ids = Ids([4, 5, 6, 7]);
        var together = model.call(ModelInput.FromIds(cat([prefixTokens, ids], 1))).Logits.narrow(1, 3, 4);
        using var prefixCache = new KeyValueCache(model.Config.NumHiddenLayers);
        model.call(new ModelInput { InputIds = prefixTokens, Cache = prefixCache });
        model.SetAttentionPrefix(new CachedPrefix(prefixCache));
        try
        {
            var withPrefix = model.call(ModelInput.FromIds(ids)).Logits;
            Assert.True(withPrefix.allclose(together, rtol: 0, atol: 1e-5));
            using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
            var first = model.call(new ModelInput { InputIds = ids.narrow(1, 0, 3), Cache = cache, AttentionMask = ones(1, 3, dtype: ScalarType.Int64) }).Logits;
            var last = model.call(new ModelInput { InputIds = ids.narrow(1, 3, 1), Cache = cache, AttentionMask = ones(1, 4, dtype: ScalarType.Int64) }).Logits;
            Assert.True(cat([first, last], 1).allclose(together, rtol: 0, atol: 1e-5));
        }
        finally
        {
            model.SetAttentionPrefix(null);
        }
    }

    [Fact]
    public void Input_embeddings_hook_prepends_virtual_tokens_and_logits_stay_aligned()
    {
        using var model = TinyModels.Create();
        using var _ = NewDisposeScope();
        var ids = Ids([4, 5, 6, 7]);
        var hook = new CopyTokensHook(model, [9, 10]);
        model.InputEmbeddingsHook = hook;
        var hooked = model.call(ModelInput.FromIds(ids)).Logits;
        model.InputEmbeddingsHook = null;
        var explicitIds = model.call(ModelInput.FromIds(Ids([9, 10, 4, 5, 6, 7]))).Logits;
        Assert.Equal([1L, 4L, model.Config.VocabSize], hooked.shape);
        Assert.True(hooked.allclose(explicitIds.narrow(1, 2, 4), rtol: 0, atol: 1e-5));

        model.InputEmbeddingsHook = hook;
        using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
        var first = model.call(new ModelInput { InputIds = ids.narrow(1, 0, 3), Cache = cache, AttentionMask = ones(1, 3, dtype: ScalarType.Int64) }).Logits;
        var next = model.call(new ModelInput { InputIds = ids.narrow(1, 3, 1), Cache = cache, AttentionMask = ones(1, 4, dtype: ScalarType.Int64) }).Logits;
        Assert.True(cat([first, next], 1).allclose(hooked, rtol: 0, atol: 1e-5));
        model.InputEmbeddingsHook = null;
    }

    [Fact]
    public void Sliding_window_limits_how_far_back_tokens_see()
    {
        using var model = TinyModels.Create(TinyModels.Config(ModelFamily.Mistral, slidingWindow: 3));
        using var _ = NewDisposeScope();
        var a = Ids([5, 17, 33, 8, 61, 2]);
        var b = a.clone();
        b[0, 0] = tensor(40L);
        var la = model.call(ModelInput.FromIds(a)).Logits;
        var lb = model.call(ModelInput.FromIds(b)).Logits;
        // With two layers and window 3, position 5 no longer depends on position 0 (receptive field 2*(3-1) = 4).
        Assert.True(la.narrow(1, 5, 1).allclose(lb.narrow(1, 5, 1), rtol: 0, atol: 1e-6));
        Assert.False(la.narrow(1, 1, 1).allclose(lb.narrow(1, 1, 1)));
    }

    private sealed class Doubling : nn.Module<Tensor, Tensor>
    {
#pragma warning disable IDE1006
        private readonly nn.Module<Tensor, Tensor> base_layer;
#pragma warning restore IDE1006

        public Doubling(nn.Module<Tensor, Tensor> inner) : base(nameof(Doubling))
        {
            base_layer = inner;
            RegisterComponents();
        }

        public override Tensor forward(Tensor input) => base_layer.call(input) * 2;
    }

    private sealed class CachedPrefix(KeyValueCache cache) : IAttentionPrefixSource
    {
        public int PrefixLength => (int)cache.Length;

        public (Tensor Keys, Tensor Values) GetPrefix(int layerIndex, long batchSize, ScalarType dtype)
        {
            var (k, v) = cache.GetLayer(layerIndex)!.Value;
            return (k.expand(batchSize, -1, -1, -1).to(dtype), v.expand(batchSize, -1, -1, -1).to(dtype));
        }
    }

    private sealed class CopyTokensHook(CausalLanguageModel model, long[] tokens) : IInputEmbeddingsHook
    {
        public int VirtualTokenCount => tokens.Length;

        public Tensor GetVirtualEmbeddings(long batchSize, ScalarType dtype) =>
            model.Body.EmbedTokens.call(tensor(tokens, [1, tokens.Length])).expand(batchSize, -1, -1).to(dtype);
    }
}

internal sealed class ToleranceComparer(double tolerance) : IEqualityComparer<double>
{
    public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

    public int GetHashCode(double obj) => 0;
}
