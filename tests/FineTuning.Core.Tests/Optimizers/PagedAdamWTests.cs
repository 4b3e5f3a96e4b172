using FineTuning.Core.Optimizers;
using FineTuning.Core.Strategies;
using FineTuning.Core.Tests.Training;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using AdamW = TorchSharp.Modules.AdamW;
using OptimizerOptions = FineTuning.Core.Optimizers.OptimizerOptions;

namespace FineTuning.Core.Tests.Optimizers;

public class PagedAdamWTests(ITestOutputHelper output)
{
    /// <summary>1 KiB pages: 256 fp32 elements, so most tiny-model tensors span several pages and end mid-page.</summary>
    private static readonly OptimizerOptions Paged = new()
    {
        Kind = OptimizerKind.PagedAdamW,
        LearningRate = 1e-2,
        WeightDecay = 0.1,
        Beta2 = 0.99,
        PageSizeBytes = 1024,
    };

    [Fact]
    public void Updates_equal_AdamW_and_torch_AdamW_with_decay_groups_and_clipping()
    {
        var (paged, pagedStrategy) = OptimizerTestKit.Qwen2();
        var (dense, denseStrategy) = OptimizerTestKit.Qwen2();
        var (reference, referenceStrategy) = OptimizerTestKit.Qwen2();
        using var a = paged;
        using var b = dense;
        using var c = reference;
        using var ours = OptimizerFactory.Create(pagedStrategy.TrainableParameters(), Paged);
        using var adamW = OptimizerFactory.Create(denseStrategy.TrainableParameters(), Paged with { Kind = OptimizerKind.AdamW });
        Assert.IsType<PagedAdamWOptimizer>(ours);
        Assert.IsType<AdamWOptimizer>(adamW);
        var parameters = referenceStrategy.TrainableParameters().Select(p => p.Parameter).ToList();
        var torchAdamW = optim.AdamW(
            [
                new AdamW.ParamGroup(parameters.Where(p => p.dim() >= 2), new AdamW.Options { LearningRate = 1e-2, beta2 = 0.99, weight_decay = 0.1 }),
                new AdamW.ParamGroup(parameters.Where(p => p.dim() < 2), new AdamW.Options { LearningRate = 1e-2, beta2 = 0.99, weight_decay = 0 }),
            ],
            lr: 1e-2);
        const double maxNorm = 0.5;
        for (var step = 0; step < 4; step++)
        {
            OptimizerTestKit.Backward(paged, step);
            OptimizerTestKit.Backward(dense, step);
            OptimizerTestKit.Backward(reference, step);
            var norm = ours.Step(1e-2, maxNorm);
            Assert.Equal(norm, adamW.Step(1e-2, maxNorm));
            Assert.True(norm > maxNorm, $"clipping must be active (norm {norm})");
            nn.utils.clip_grad_norm_(parameters, maxNorm);
            torchAdamW.step();
            ours.ZeroGrad();
            adamW.ZeroGrad();
            torchAdamW.zero_grad();
        }

        var versusAdamW = OptimizerTestKit.MaxRelativeDifference(paged.parameters(), dense.parameters());
        var versusTorch = paged.parameters().Zip(reference.parameters()).Max(p => (p.First - p.Second).abs().max().item<float>());
        output.WriteLine($"paged vs AdamW: max relative difference {versusAdamW:g3}; paged vs torch AdamW: max abs difference {versusTorch:g3}");
        Assert.True(versusAdamW <= 1e-6, $"paged vs AdamW: {versusAdamW}");
        Assert.True(versusTorch <= 1e-5, $"paged vs torch AdamW: {versusTorch}");
        Assert.Equal(4, ours.StepCount);
    }

    [Theory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void A_parameter_bigger_than_a_page_is_updated_across_page_boundaries(ScalarType dtype)
    {
        // 37 x 29 = 1073 elements: four full 256-element pages and one of 49; 301 elements: one full page and 45.
        var pagedParameters = OptimizerTestKit.Parameters(3, dtype, [37, 29], [301], [5]);
        var denseParameters = OptimizerTestKit.Clone(pagedParameters);
        using var paged = new PagedAdamWOptimizer(pagedParameters, Paged);
        using var dense = new AdamWOptimizer(denseParameters, Paged);
        for (var step = 0; step < 5; step++)
        {
            OptimizerTestKit.SetGradients(pagedParameters, step);
            OptimizerTestKit.SetGradients(denseParameters, step);
            paged.Step(1e-2, 1.0);
            dense.Step(1e-2, 1.0);
        }

        foreach (var (p, q) in pagedParameters.Zip(denseParameters))
        {
            Assert.True(OptimizerTestKit.Same(p.Parameter, q.Parameter), p.Name);
            if (dtype != ScalarType.Float32)
            {
                Assert.True(OptimizerTestKit.Same(paged.Gather(p.Name, "master"), dense.Master(q.Name)));
            }
        }
    }

    [Fact]
    public void A_tiny_host_budget_spills_to_a_file_with_identical_results_and_the_file_goes_on_dispose()
    {
        using var spill = new TempDirectory();
        var pagedParameters = OptimizerTestKit.Parameters(4, ScalarType.BFloat16, [37, 29], [301]);
        var denseParameters = OptimizerTestKit.Clone(pagedParameters);
        var options = Paged with { HostMemoryBudgetBytes = 4096, SpillDirectory = spill.Path };
        string file;
        using (var dense = new AdamWOptimizer(denseParameters, options))
        using (var paged = new PagedAdamWOptimizer(pagedParameters, options))
        {
            Assert.Equal(4096, paged.HostBytes);
            Assert.True(paged.SpilledBytes > 2 * paged.HostBytes, $"spilled {paged.SpilledBytes}");
            file = paged.SpillFilePath!;
            Assert.True(File.Exists(file));
            Assert.Equal(spill.Path, Path.GetDirectoryName(file));
            for (var step = 0; step < 4; step++)
            {
                OptimizerTestKit.SetGradients(pagedParameters, step);
                OptimizerTestKit.SetGradients(denseParameters, step);
                paged.Step(1e-2, null);
                dense.Step(1e-2, null);
                Assert.True(File.Exists(file));
            }

            foreach (var (p, q) in pagedParameters.Zip(denseParameters))
            {
                Assert.True(OptimizerTestKit.Same(p.Parameter, q.Parameter), p.Name);
                Assert.True(OptimizerTestKit.Same(paged.Gather(p.Name, "master"), dense.Master(q.Name)), p.Name);
            }

            output.WriteLine($"host {paged.HostBytes} B, spilled {paged.SpilledBytes} B to {file}");
        }

        Assert.False(File.Exists(file));
        Assert.Empty(Directory.GetFiles(spill.Path));
    }

    [Theory]
    [InlineData(OptimizerKind.PagedAdamW, ScalarType.Float32, 0)]
    [InlineData(OptimizerKind.PagedAdamW, ScalarType.BFloat16, 0)]
    [InlineData(OptimizerKind.PagedAdamW8bit, ScalarType.Float32, 0)]
    [InlineData(OptimizerKind.PagedAdamW, ScalarType.Float32, 16384)]
    public void The_device_holds_at_most_one_page_per_state_beyond_its_budget(OptimizerKind kind, ScalarType dtype, long deviceBudget)
    {
        const long page = 4096;
        var parameters = OptimizerTestKit.Parameters(5, dtype, [256, 100], [3000], [7]);
        var options = new OptimizerOptions { Kind = kind, PageSizeBytes = page, DeviceMemoryBudgetBytes = deviceBudget, Min8BitSize = 1024 };
        using var optimizer = new PagedAdamWOptimizer(parameters, options);
        var states = (dtype == ScalarType.Float32 ? 2 : 3);
        var perSlice = optimizer.SliceWorkingBytes;
        Assert.True(perSlice <= 2 * states * page, $"{perSlice} bytes for one slice");
        long peak = 0;
        for (var step = 0; step < 3; step++)
        {
            optimizer.ResetDevicePeak();
            OptimizerTestKit.SetGradients(parameters, step);
            optimizer.Step(1e-3, 1.0);
            peak = Math.Max(peak, optimizer.DevicePeakBytes);
        }

        var total = optimizer.StateBytes;
        output.WriteLine($"{kind} {dtype} device budget {deviceBudget}: state {total} B, device peak {peak} B per step, slice working set {perSlice} B, page {page} B");
        Assert.True(peak <= deviceBudget + perSlice, $"peak {peak}");
        if (deviceBudget == 0)
        {
            Assert.True(peak < total / 4, $"peak {peak} of {total}");
        }

        if (kind == OptimizerKind.PagedAdamW && deviceBudget == 0)
        {
            Assert.Equal(states * page, peak);
        }
    }

    [Fact]
    public void State_files_of_AdamW_and_PagedAdamW_are_interchangeable_and_resume_exactly()
    {
        using var dir = new TempDirectory();
        var first = OptimizerTestKit.Parameters(6, ScalarType.BFloat16, [37, 29], [301]);
        var second = OptimizerTestKit.Clone(first);
        using var dense = new AdamWOptimizer(first, Paged);
        using var paged = new PagedAdamWOptimizer(second, Paged with { HostMemoryBudgetBytes = 2048, SpillDirectory = dir.Path });
        for (var step = 0; step < 3; step++)
        {
            OptimizerTestKit.SetGradients(first, step);
            OptimizerTestKit.SetGradients(second, step);
            dense.Step(1e-2, null);
            paged.Step(1e-2, null);
        }

        dense.Save(dir.File("dense.safetensors"));
        paged.Save(dir.File("paged.safetensors"));
        using var fromDense = new PagedAdamWOptimizer(OptimizerTestKit.Clone(first), Paged);
        using var fromPaged = new AdamWOptimizer(OptimizerTestKit.Clone(second), Paged);
        fromDense.Load(dir.File("dense.safetensors"));
        fromPaged.Load(dir.File("paged.safetensors"));
        Assert.Equal(3, fromDense.StepCount);
        foreach (var p in first)
        {
            foreach (var state in new[] { "exp_avg", "exp_avg_sq", "master" })
            {
                Assert.True(OptimizerTestKit.Same(fromDense.Gather(p.Name, state), paged.Gather(p.Name, state)), $"{p.Name}.{state}");
            }

            Assert.True(OptimizerTestKit.Same(fromPaged.Master(p.Name), dense.Master(p.Name)));
        }
    }

    [Fact]
    public void The_trainer_builds_the_kind_the_options_name()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        foreach (var kind in Enum.GetValues<OptimizerKind>())
        {
            using var optimizer = OptimizerFactory.Create(strategy.TrainableParameters(), new OptimizerOptions { Kind = kind });
            Assert.IsType(kind == OptimizerKind.AdamW ? typeof(AdamWOptimizer) : typeof(PagedAdamWOptimizer), optimizer);
        }
    }

    [Theory]
    [InlineData("PageSizeBytes", 1000L)]
    [InlineData("PageSizeBytes", 0L)]
    [InlineData("PageSizeBytes", 2L << 30)]
    [InlineData("DeviceMemoryBudgetBytes", -1L)]
    [InlineData("HostMemoryBudgetBytes", -1L)]
    [InlineData("Min8BitSize", -1L)]
    [InlineData("StateBlockSize", 100L)]
    [InlineData("StateBlockSize", 32L)]
    [InlineData("SpillDirectory", 0L)]
    [InlineData("Kind", 99L)]
    public void Invalid_options_name_the_option(string option, long value)
    {
        var options = option switch
        {
            "PageSizeBytes" => new OptimizerOptions { PageSizeBytes = value },
            "DeviceMemoryBudgetBytes" => new OptimizerOptions { DeviceMemoryBudgetBytes = value },
            "HostMemoryBudgetBytes" => new OptimizerOptions { HostMemoryBudgetBytes = value },
            "Min8BitSize" => new OptimizerOptions { Min8BitSize = (int)value },
            "StateBlockSize" => new OptimizerOptions { StateBlockSize = (int)value },
            "SpillDirectory" => new OptimizerOptions { SpillDirectory = " " },
            _ => new OptimizerOptions { Kind = (OptimizerKind)value },
        };
        var error = Assert.Throws<InvalidOptionException>(options.Validate);
        Assert.Equal("OptimizerOptions." + option, error.Option);
        Assert.Throws<InvalidOptionException>(() => OptimizerFactory.Create(Array.Empty<NamedParameter>(), options));
    }
}
