using System.Diagnostics;
using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Models;
using FineTuning.Core.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Training;

public class ActivationCheckpointingCostTests(ITestOutputHelper output)
{
    [Fact]
    [Trait("Category", "Slow")]
    public void Checkpointing_costs_about_one_extra_forward()
    {
        var config = TinyModels.Config() with { HiddenSize = 256, IntermediateSize = 768, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 4, MaxPositionEmbeddings = 512 };
        using var model = TinyModels.Create(config);
        model.train();
        var batch = BatchCollator.Collate(TrainingData.Examples(4, seed: 1, minLength: 256, maxLength: 256).Select(PackedRow.Single).ToList(), true);
        double Measure(bool checkpointed)
        {
            model.LayerRunner = checkpointed ? ActivationCheckpointing.Runner : null;
            var times = new List<double>();
            for (var i = 0; i < 6; i++)
            {
                var clock = Stopwatch.StartNew();
                using (var scope = NewDisposeScope())
                {
                    NextTokenLoss.Sum(model, batch).backward();
                }

                times.Add(clock.Elapsed.TotalMilliseconds);
                TrainingData.ClearGradients(model);
            }

            return times.Skip(1).Order().ElementAt(2);
        }

        var plain = Measure(false);
        var checkpointed = Measure(true);
        model.LayerRunner = null;
        output.WriteLine($"forward+backward, 4 layers, 4 x 256 tokens: plain {plain:F0} ms, checkpointed {checkpointed:F0} ms ({checkpointed / plain:P0})");
        Assert.True(checkpointed < plain * 2.5);
    }
}
