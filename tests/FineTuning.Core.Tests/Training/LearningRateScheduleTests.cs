using FineTuning.Core.Training;
using Xunit;

namespace FineTuning.Core.Tests.Training;

public class LearningRateScheduleTests
{
    [Fact]
    public void Constant_with_warmup_rises_linearly_from_zero_then_stays()
    {
        var options = new ScheduleOptions { Kind = ScheduleKind.Constant, WarmupSteps = 4 };
        var values = Enumerable.Range(0, 10).Select(s => LearningRateSchedule.Multiplier(options, s, 10)).ToArray();
        Assert.Equal(new[] { 0, 0.25, 0.5, 0.75, 1, 1, 1, 1, 1, 1 }, values);
    }

    [Fact]
    public void Linear_decays_to_the_floor_after_the_last_step()
    {
        // T = 10, W = 2, m = 0.1: s >= 2 gives 0.1 + 0.9 * (1 - (s - 2) / 8).
        var options = new ScheduleOptions { Kind = ScheduleKind.Linear, WarmupSteps = 2, MinLearningRateRatio = 0.1 };
        for (var s = 0; s < 10; s++)
        {
            var expected = s < 2 ? s / 2.0 : 0.1 + (0.9 * (1 - ((s - 2) / 8.0)));
            Assert.Equal(expected, LearningRateSchedule.Multiplier(options, s, 10), 12);
        }

        Assert.Equal(0.1, LearningRateSchedule.Multiplier(options, 10, 10), 12);
        Assert.Equal(0.1, LearningRateSchedule.Multiplier(options, 15, 10), 12);
    }

    [Fact]
    public void Cosine_follows_half_a_cosine_to_the_floor()
    {
        var options = new ScheduleOptions { Kind = ScheduleKind.Cosine, WarmupSteps = 3, MinLearningRateRatio = 0.2 };
        for (var s = 0; s < 20; s++)
        {
            var expected = s < 3 ? s / 3.0 : 0.2 + (0.8 * 0.5 * (1 + Math.Cos(Math.PI * (s - 3) / 17.0)));
            Assert.Equal(expected, LearningRateSchedule.Multiplier(options, s, 20), 12);
        }

        // Halfway through the decay the cosine is at the midpoint between peak and floor.
        Assert.Equal(0.6, LearningRateSchedule.Multiplier(options with { WarmupSteps = 0 }, 10, 20), 12);
    }

    [Fact]
    public void Warmup_ratio_rounds_up_and_no_warmup_starts_at_the_peak()
    {
        Assert.Equal(3, LearningRateSchedule.WarmupSteps(new ScheduleOptions { WarmupRatio = 0.1 }, 25));
        Assert.Equal(10, LearningRateSchedule.WarmupSteps(new ScheduleOptions { WarmupRatio = 0.1 }, 100));
        Assert.Equal(5, LearningRateSchedule.WarmupSteps(new ScheduleOptions { WarmupSteps = 5, WarmupRatio = 0.5 }, 100));
        Assert.Equal(1.0, LearningRateSchedule.Multiplier(ScheduleOptions.Default, 0, 10));
        Assert.Equal(0.9, LearningRateSchedule.Multiplier(ScheduleOptions.Default, 1, 10), 12);
        Assert.Equal(2e-4 * 0.5, LearningRateSchedule.LearningRate(2e-4, new ScheduleOptions { Kind = ScheduleKind.Constant, WarmupSteps = 2 }, 1, 10), 15);
    }
}
