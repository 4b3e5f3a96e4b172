using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Strategies.Lora;

/// <summary>Shared helpers of the LoRA tests.</summary>
internal static class LoraTestKit
{
    public static Tensor Ids() => tensor(new long[] { 3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26 }, [2, 6], dtype: ScalarType.Int64);

    /// <summary>fp32 logits of a fixed batch, detached from any scope.</summary>
    public static Tensor Logits(CausalLanguageModel model)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var ids = Ids();
        return model.call(ModelInput.FromIds(ids)).Logits.detach().clone().MoveToOuterDisposeScope();
    }

    public static LoraStrategy Apply(CausalLanguageModel model, LoraOptions? options = null, ILogger? logger = null)
    {
        var strategy = new LoraStrategy(options);
        strategy.Apply(model, logger is null ? StrategyContext.Empty : new StrategyContext { Logger = logger });
        return strategy;
    }

    /// <summary>Gives every B (and DoRA magnitude) of an adapter random values, so the adapter changes the output.</summary>
    public static void Randomize(LoraStrategy strategy, string adapter = LoraStrategy.DefaultAdapterName, long seed = 7, double std = 0.2)
    {
        var generator = new Generator((ulong)seed);
        using var _ = no_grad();
        foreach (var layer in strategy.LoraLayers.Values.Where(l => l.HasAdapter(adapter)))
        {
            layer.LoraB(adapter).weight!.normal_(0, std, generator);
            if (layer.Magnitude(adapter) is { } magnitude)
            {
                magnitude.mul_(1 + (0.3 * rand(magnitude.shape, generator: generator)));
            }
        }
    }

    /// <summary>Clones of every parameter, by name.</summary>
    public static Dictionary<string, Tensor> Snapshot(nn.Module model) =>
        model.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());

    public static double MaxDiff(Tensor a, Tensor b)
    {
        using var diff = (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max();
        return diff.item<double>();
    }

    public static bool BitEqual(Tensor a, Tensor b) => a.dtype == b.dtype && a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
}

/// <summary>An ILogger that records messages.</summary>
internal sealed class ListLogger : ILogger
{
    public List<(LogLevel Level, string Message)> Entries { get; } = [];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Add((logLevel, formatter(state, exception)));
}
