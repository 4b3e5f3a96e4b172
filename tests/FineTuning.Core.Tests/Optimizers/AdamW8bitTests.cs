using FineTuning.Core.IO;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Quantization;
using FineTuning.Core.Strategies;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using OptimizerOptions = FineTuning.Core.Optimizers.OptimizerOptions;

namespace FineTuning.Core.Tests.Optimizers;

public class AdamW8bitTests(ITestOutputHelper output)
{
    /// <summary>bitsandbytes' AdamW defaults (lr 1e-3, weight decay 1e-2); 64 KiB pages (16384 elements) so each tensor spans two.</summary>
    private static readonly OptimizerOptions EightBit = new()
    {
        Kind = OptimizerKind.AdamW8bit,
        LearningRate = 1e-3,
        WeightDecay = 1e-2,
        PageSizeBytes = 64 * 1024,
    };

    /// <summary>
    /// bitsandbytes' test_optimizer8bit: 50 steps of p ~ 0.1·randn, g ~ 0.01·randn against fp32 AdamW. As there, a
    /// reference that takes the 8-bit optimizer's weights and dequantized moments after each step measures each step
    /// on its own: fewer than 20 moment elements not close (atol 3e-3, rtol 1e-3), weights' mean abs error &lt; 6e-5
    /// and mean relative error &lt; 6e-4 (our fp32 arithmetic is AdamW's, so the weights agree exactly and the moments
    /// differ by their quantization error alone, which is also bounded relative to the moments' size). A second fp32
    /// AdamW that is never synchronised accumulates the moments' error: after 50 steps the weights must still differ
    /// from it by less than 5 % of how far fp32 AdamW moved them.
    /// </summary>
    [Theory]
    [InlineData(OptimizerKind.AdamW8bit)]
    [InlineData(OptimizerKind.PagedAdamW8bit)]
    public void Matches_fp32_AdamW_within_bitsandbytes_tolerances(OptimizerKind kind)
    {
        var parameters = OptimizerTestKit.Parameters(11, ScalarType.Float32, [1024, 32], [100, 257]);
        using var optimizer = new PagedAdamWOptimizer(parameters, EightBit with { Kind = kind });
        Assert.Equal(new[] { "p0", "p1" }, optimizer.EightBitNames);
        var initial = parameters.Select(p => p.Parameter.detach().clone()).ToList();
        var synced = parameters.Select(p => new Fp32AdamW(p.Parameter)).ToList();
        var free = parameters.Select(p => new Fp32AdamW(p.Parameter)).ToList();
        var (worstNotClose, worstAbs, worstRel) = (0L, 0.0, 0.0);
        var worstMomentError = new double[2];
        for (var step = 1; step <= 50; step++)
        {
            using var scope = NewDisposeScope();
            OptimizerTestKit.SetGradients(parameters, step);
            var adamWStep = new AdamWStep(EightBit.LearningRate, EightBit, step);
            foreach (var (reference, p) in synced.Concat(free).Zip(parameters.Concat(parameters)))
            {
                reference.Step(p.Parameter.grad!, adamWStep);
            }

            optimizer.Step(EightBit.LearningRate, null);
            foreach (var (reference, p) in synced.Zip(parameters))
            {
                for (var s = 0; s < 2; s++)
                {
                    var expected = s == 0 ? reference.ExpAvg : reference.ExpAvgSq;
                    var actual = optimizer.Gather(p.Name, s == 0 ? "exp_avg" : "exp_avg_sq");
                    var notClose = actual.isclose(expected, rtol: 1e-3, atol: 3e-3).logical_not().sum().item<long>();
                    worstNotClose = Math.Max(worstNotClose, notClose);
                    Assert.True(notClose < 20, $"step {step} {p.Name} state {s}: {notClose} elements not close");
                    var relative = ((actual - expected).abs().mean() / expected.abs().mean()).item<float>();
                    worstMomentError[s] = Math.Max(worstMomentError[s], relative);
                    Assert.True(relative < 0.02, $"step {step} {p.Name} state {s}: quantization error {relative} of the mean magnitude");
                    expected.copy_(actual);
                }

                var (meanAbs, meanRel) = Errors(p.Parameter, reference.Weights);
                (worstAbs, worstRel) = (Math.Max(worstAbs, meanAbs), Math.Max(worstRel, meanRel));
                Assert.True(meanAbs < 6e-5, $"step {step} {p.Name}: mean abs error {meanAbs}");
                Assert.True(meanRel < 6e-4, $"step {step} {p.Name}: mean relative error {meanRel}");
                reference.Weights.copy_(p.Parameter.detach());
            }
        }

        var drift = free.Zip(parameters).Zip(initial).Select(t => Drift(t.First.Second.Parameter, t.First.First.Weights, t.Second)).ToList();
        output.WriteLine(
            $"{kind}, per step: at most {worstNotClose} moment elements not close (bound < 20); weights mean abs error {worstAbs:g3} (< 6e-5), " +
            $"mean relative {worstRel:g3} (< 6e-4); moments' mean abs quantization error {worstMomentError[0]:p2} (m), {worstMomentError[1]:p2} (v) of their mean magnitude. " +
            $"After 50 unsynchronised steps: weights mean abs error {drift.Max(d => d.MeanAbs):g3}, {drift.Max(d => d.OfUpdate):p2} of fp32 AdamW's mean update");
        Assert.All(drift, d => Assert.True(d.OfUpdate < 0.05, $"drift {d}"));
    }

    private static (double MeanAbs, double MeanRel) Errors(Tensor actual, Tensor expected)
    {
        using var scope = NewDisposeScope();
        var error = (actual.detach() - expected).abs();
        return (error.mean().item<float>(), (error / (expected.abs() + 1e-9)).mean().item<float>());
    }

    private static (double MeanAbs, double OfUpdate) Drift(Tensor actual, Tensor expected, Tensor initial)
    {
        using var scope = NewDisposeScope();
        var error = (actual.detach() - expected).abs().mean().item<float>();
        return (error, error / (expected - initial).abs().mean().item<float>());
    }

    /// <summary>A plain fp32 AdamW (the kernel our fp32 kinds use) on a copy of a parameter.</summary>
    private sealed class Fp32AdamW(Tensor initial)
    {
        public Tensor Weights { get; } = initial.detach().clone().DetachFromDisposeScope();

        public Tensor ExpAvg { get; } = zeros_like(initial).DetachFromDisposeScope();

        public Tensor ExpAvgSq { get; } = zeros_like(initial).DetachFromDisposeScope();

        public void Step(Tensor grad, in AdamWStep step)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            AdamWUpdate.Apply(Weights, ExpAvg, ExpAvgSq, grad, decay: true, step);
        }
    }

    [Fact]
    public void Large_tensors_hold_about_two_bytes_of_state_per_parameter_and_small_ones_stay_fp32()
    {
        var parameters = OptimizerTestKit.Parameters(12, ScalarType.Float32, [1024, 256], [4095], [64]);
        using var eightBit = new PagedAdamWOptimizer(parameters, EightBit);
        using var paged = new PagedAdamWOptimizer(parameters, EightBit with { Kind = OptimizerKind.PagedAdamW });
        Assert.Equal(new[] { "p0" }, eightBit.EightBitNames);
        const long large = 1024 * 256;
        const long small = 4095 + 64;
        var perParameter = (double)(eightBit.StateBytes - (8 * small)) / large;
        output.WriteLine($"8-bit: {perParameter} state bytes per parameter of the large tensor; 32-bit: {(double)paged.StateBytes / (large + small)}");
        Assert.Equal(2 + (8.0 / 256), perParameter);
        Assert.Equal(8 * (large + small), paged.StateBytes);

        // The fp32 tensors get exactly AdamW's update.
        var dense = OptimizerTestKit.Clone(parameters);
        using var adamW = new AdamWOptimizer(dense, EightBit);
        OptimizerTestKit.SetGradients(parameters, 1);
        OptimizerTestKit.SetGradients(dense, 1);
        eightBit.Step(1e-3, 1.0);
        adamW.Step(1e-3, 1.0);
        Assert.True(OptimizerTestKit.Same(parameters[1].Parameter, dense[1].Parameter));
        Assert.True(OptimizerTestKit.Same(parameters[2].Parameter, dense[2].Parameter));
    }

    [Fact]
    public void A_non_finite_gradient_element_zeroes_its_state_and_leaves_its_weight()
    {
        using var scope = NewDisposeScope();
        var weights = randn(512) * 0.1;
        var before = weights.clone();
        var expAvg = Blockwise8BitQuantizer.Quantize(randn(512) * 0.01, DynamicQuantizationMap.Signed);
        var expAvgSq = Blockwise8BitQuantizer.Quantize(rand(512) * 1e-4, DynamicQuantizationMap.Unsigned);
        var grad = randn(512) * 0.01;
        grad[3].fill_(float.NaN);
        grad[300].fill_(float.PositiveInfinity);
        grad[301].fill_(float.NegativeInfinity);
        AdamWUpdate.Apply8Bit(weights, expAvg, expAvgSq, grad, decay: true, new AdamWStep(1e-2, EightBit with { WeightDecay = 0.1 }, 5));
        var m = Blockwise8BitQuantizer.Dequantize(expAvg, DynamicQuantizationMap.Signed);
        var v = Blockwise8BitQuantizer.Dequantize(expAvgSq, DynamicQuantizationMap.Unsigned);
        foreach (var i in new[] { 3, 300, 301 })
        {
            Assert.Equal(before[i].item<float>(), weights[i].item<float>());
            Assert.Equal(0f, m[i].item<float>());
            Assert.Equal(0f, v[i].item<float>());
        }

        Assert.True(weights.isfinite().all().item<bool>());
        Assert.Equal(509, weights.ne(before).sum().item<long>());
    }

    [Fact]
    public void A_small_negative_first_moment_keeps_a_negative_code()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(0f, DynamicQuantizationMap.Signed[127]);
        Assert.True(DynamicQuantizationMap.Signed[126] < 0);

        // -1e-9 / 1.0 rounds to the code of 0 (127); bitsandbytes moves it one code toward its sign (126).
        var values = tensor(new[] { 1.0f, -1e-9f, 1e-9f, -0.5f, 0f });
        var target = new BlockwiseQuantized8Bit(zeros(5, ScalarType.Byte), zeros(1), 256);
        AdamWUpdate.Quantize(values, target, DynamicQuantizationMap.Signed, fixSign: true);
        Assert.Equal(new byte[] { 255, 126, 127, Blockwise8BitQuantizer.Quantize(tensor(new[] { 1.0f, -0.5f }), DynamicQuantizationMap.Signed).Codes[1].item<byte>(), 127 }, target.Codes.data<byte>().ToArray());
        AdamWUpdate.Quantize(values, target, DynamicQuantizationMap.Signed, fixSign: false);
        Assert.Equal(127, target.Codes[1].item<byte>());
    }

    [Theory]
    [InlineData(OptimizerKind.AdamW8bit)]
    [InlineData(OptimizerKind.PagedAdamW8bit)]
    public void State_round_trips_through_a_file_and_resumes_exactly(OptimizerKind kind)
    {
        using var dir = new TempDirectory();
        var options = EightBit with { Kind = kind, HostMemoryBudgetBytes = 16384, SpillDirectory = dir.Path };
        var first = OptimizerTestKit.Parameters(13, ScalarType.BFloat16, [1000, 33], [64]);
        using var optimizer = new PagedAdamWOptimizer(first, options);
        for (var step = 0; step < 3; step++)
        {
            OptimizerTestKit.SetGradients(first, step);
            optimizer.Step(1e-3, 1.0);
        }

        var second = OptimizerTestKit.Clone(first);
        optimizer.Save(dir.File("opt.safetensors"));
        using (var reader = new SafetensorsReader(dir.File("opt.safetensors")))
        {
            Assert.Equal(ScalarType.Byte, reader.GetInfo("p0.exp_avg.codes").ScalarType);
            Assert.Equal(new[] { 1000L, 33 }, reader.GetInfo("p0.exp_avg_sq.codes").Shape);
            Assert.Equal(new[] { ((1000L * 33) + 255) / 256 }, reader.GetInfo("p0.exp_avg.absmax").Shape);
            Assert.Equal(ScalarType.Float32, reader.GetInfo("p0.master").ScalarType);
            Assert.Equal(ScalarType.Float32, reader.GetInfo("p1.exp_avg").ScalarType);
            Assert.Equal("256", reader.Metadata["block_size"]);
        }

        using var restored = new PagedAdamWOptimizer(second, options with { Kind = kind == OptimizerKind.AdamW8bit ? OptimizerKind.PagedAdamW8bit : OptimizerKind.AdamW8bit });
        restored.Load(dir.File("opt.safetensors"));
        Assert.Equal(3, restored.StepCount);
        for (var step = 3; step < 6; step++)
        {
            OptimizerTestKit.SetGradients(first, step);
            OptimizerTestKit.SetGradients(second, step);
            optimizer.Step(1e-3, 1.0);
            restored.Step(1e-3, 1.0);
        }

        foreach (var (p, q) in first.Zip(second))
        {
            Assert.True(OptimizerTestKit.Same(p.Parameter, q.Parameter), p.Name);
            foreach (var state in new[] { "exp_avg", "exp_avg_sq", "master" })
            {
                Assert.True(OptimizerTestKit.Same(optimizer.Gather(p.Name, state), restored.Gather(q.Name, state)), $"{p.Name}.{state}");
            }
        }

        using var fp32 = new PagedAdamWOptimizer(OptimizerTestKit.Clone(first), options with { Kind = OptimizerKind.PagedAdamW });
        var error = Assert.Throws<CheckpointFormatException>(() => fp32.Load(dir.File("opt.safetensors")));
        Assert.Contains("same optimizer kind", error.Message);
        using var otherBlocks = new PagedAdamWOptimizer(OptimizerTestKit.Clone(first), options with { StateBlockSize = 512 });
        Assert.Throws<CheckpointFormatException>(() => otherBlocks.Load(dir.File("opt.safetensors")));
    }
}
