using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Models;
using FineTuning.Core.Optimizers;
using FineTuning.Core.Strategies;
using TorchSharp;
using AdamW = TorchSharp.Modules.AdamW;
using OptimizerOptions = FineTuning.Core.Optimizers.OptimizerOptions;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class AdamWOptimizerTests
{
    private static void Backward(CausalLanguageModel model, int seed = 1)
    {
        using var scope = NewDisposeScope();
        var batch = BatchCollator.Collate(TrainingData.Examples(3, seed).Select(PackedRow.Single).ToList(), true);
        (NextTokenLoss.Sum(model, batch) / batch.TargetCount).backward();
    }

    [Fact]
    public void Weight_decay_applies_to_matrices_only()
    {
        var (model, strategy) = TrainingData.FullSft(config: TinyModels.Config(ModelFamily.Qwen2));
        using var _ = model;
        using var optimizer = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions { WeightDecay = 0.1 });
        var decayed = optimizer.DecayedParameterNames.ToHashSet();
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", decayed);
        Assert.Contains("model.embed_tokens.weight", decayed);
        Assert.Contains("lm_head.weight", decayed);
        Assert.Contains(strategy.TrainableParameters(), p => p.Name.EndsWith(".bias", StringComparison.Ordinal));
        foreach (var p in strategy.TrainableParameters())
        {
            Assert.Equal(p.Parameter.dim() >= 2, decayed.Contains(p.Name));
            Assert.Equal(!(p.Name.EndsWith("norm.weight", StringComparison.Ordinal) || p.Name.EndsWith(".bias", StringComparison.Ordinal)), decayed.Contains(p.Name));
        }
    }

    [Fact]
    public void Updates_equal_torch_AdamW_with_a_no_decay_group_for_1d_parameters()
    {
        var (ours, ourStrategy) = TrainingData.FullSft(config: TinyModels.Config(ModelFamily.Qwen2));
        var (reference, referenceStrategy) = TrainingData.FullSft(config: TinyModels.Config(ModelFamily.Qwen2));
        using var a = ours;
        using var b = reference;
        var options = new OptimizerOptions { LearningRate = 1e-2, WeightDecay = 0.1, Beta2 = 0.99 };
        using var optimizer = new AdamWOptimizer(ourStrategy.TrainableParameters(), options);
        var parameters = referenceStrategy.TrainableParameters().Select(p => p.Parameter).ToList();
        var torchAdamW = optim.AdamW(
            [
                new AdamW.ParamGroup(parameters.Where(p => p.dim() >= 2), new AdamW.Options { LearningRate = 1e-2, beta2 = 0.99, weight_decay = 0.1 }),
                new AdamW.ParamGroup(parameters.Where(p => p.dim() < 2), new AdamW.Options { LearningRate = 1e-2, beta2 = 0.99, weight_decay = 0 }),
            ],
            lr: 1e-2);
        for (var step = 0; step < 3; step++)
        {
            Backward(ours, step);
            Backward(reference, step);
            optimizer.Step(1e-2, maxGradNorm: null);
            torchAdamW.step();
            optimizer.ZeroGrad();
            torchAdamW.zero_grad();
        }

        // TorchSharp's AdamW updates the first moment with mul_+add_ where PyTorch (and we) use lerp_, and the k_proj
        // biases get only rounding-noise gradients (softmax ignores a shift shared by all keys): allow 0.1% of a step.
        foreach (var ((name, p), (_, q)) in ours.named_parameters().Zip(reference.named_parameters()))
        {
            Assert.True(p.allclose(q, rtol: 0, atol: 1e-5), $"{name}: max diff {(p - q).abs().max().item<float>()}");
        }

        Assert.Equal(3, optimizer.StepCount);
    }

    [Fact]
    public void Clipping_scales_the_global_norm_to_the_maximum_and_reports_the_norm_before()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        Backward(model);
        var grads = strategy.TrainableParameters().Select(p => p.Parameter.grad!.clone()).ToList();
        var expectedNorm = Math.Sqrt(grads.Sum(g => g.pow(2).sum().item<float>()));
        using var optimizer = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions());
        var maxNorm = expectedNorm / 4;
        var reported = optimizer.Step(1e-3, maxNorm);
        Assert.Equal(expectedNorm, reported, expectedNorm * 1e-5);
        var clipped = Math.Sqrt(strategy.TrainableParameters().Sum(p => p.Parameter.grad!.pow(2).sum().item<float>()));
        Assert.Equal(maxNorm, clipped, maxNorm * 1e-4);
        var ratio = strategy.TrainableParameters()[0].Parameter.grad! / grads[0];
        Assert.True(ratio.nan_to_num(0.25).allclose(full_like(ratio, 0.25), rtol: 1e-4, atol: 0));
    }

    [Fact]
    public void Bf16_parameters_step_on_fp32_master_copies()
    {
        var (model, strategy) = TrainingData.FullSft(ScalarType.BFloat16);
        using var _ = model;
        using var optimizer = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions());
        Assert.Equal(strategy.TrainableParameters().Select(p => p.Name), optimizer.MasterCopyNames);
        var name = "model.layers.0.mlp.up_proj.weight";
        var parameter = strategy.TrainableParameters().Single(p => p.Name == name).Parameter;
        var before = optimizer.Master(name).clone();
        Assert.Equal(ScalarType.Float32, before.dtype);

        // A learning rate so small that bf16 cannot represent one update: the master copy still moves.
        for (var i = 0; i < 3; i++)
        {
            Backward(model, i);
            optimizer.Step(1e-6, maxGradNorm: 1.0);
            optimizer.ZeroGrad();
        }

        var master = optimizer.Master(name);
        Assert.False(master.eq(before).all().item<bool>());
        Assert.True(parameter.eq(master.to(ScalarType.BFloat16)).all().item<bool>());
        Assert.Equal(ScalarType.BFloat16, parameter.dtype);
    }

    [Fact]
    public void A_non_finite_gradient_skips_the_update()
    {
        var (model, strategy) = TrainingData.FullSft();
        using var _ = model;
        var before = TrainingData.Snapshot(model);
        using var optimizer = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions());
        Backward(model);
        using (no_grad())
        {
            strategy.TrainableParameters()[0].Parameter.grad![0].fill_(double.NaN);
        }

        Assert.True(double.IsNaN(optimizer.Step(1e-2, 1.0)));
        Assert.Equal(0, optimizer.StepCount);
        TrainingData.AssertSameWeights(before, model);
    }

    [Fact]
    public void State_round_trips_through_a_file()
    {
        using var dir = new TempDirectory();
        var (model, strategy) = TrainingData.FullSft(ScalarType.BFloat16);
        using var _ = model;
        using var optimizer = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions());
        Backward(model);
        optimizer.Step(1e-3, null);
        optimizer.Save(dir.File("opt.safetensors"));
        using var restored = new AdamWOptimizer(strategy.TrainableParameters(), new OptimizerOptions());
        restored.Load(dir.File("opt.safetensors"));
        Assert.Equal(1, restored.StepCount);
        foreach (var name in optimizer.MasterCopyNames)
        {
            Assert.True(restored.Master(name).eq(optimizer.Master(name)).all().item<bool>());
        }
    }
}
