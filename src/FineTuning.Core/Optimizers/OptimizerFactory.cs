using FineTuning.Core.Strategies;

namespace FineTuning.Core.Optimizers;

/// <summary>Builds the optimizer <see cref="OptimizerOptions.Kind"/> names.</summary>
internal static class OptimizerFactory
{
    /// <summary>Creates the optimizer and its zeroed state over <paramref name="parameters"/>.</summary>
    /// <param name="parameters">The parameters to train, with unique names.</param>
    /// <param name="options">The settings; validated here.</param>
    /// <returns>The optimizer; the caller disposes it.</returns>
    public static IOptimizer Create(IReadOnlyList<NamedParameter> parameters, OptimizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return options.Kind == OptimizerKind.AdamW
            ? new AdamWOptimizer(parameters, options)
            : new PagedAdamWOptimizer(parameters, options);
    }
}
