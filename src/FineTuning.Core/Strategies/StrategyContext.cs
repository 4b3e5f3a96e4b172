using FineTuning.Core.Data;
using FineTuning.Core.Tokenization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace FineTuning.Core.Strategies;

/// <summary>What a strategy may use while it is applied besides the model itself.</summary>
public sealed record StrategyContext
{
    /// <summary>A context with no tokenizer, no data and a null logger.</summary>
    public static StrategyContext Empty { get; } = new();

    /// <summary>The tokenizer (prompt tuning initialises from text with it); <c>null</c> when none is known.</summary>
    public ITextTokenizer? Tokenizer { get; init; }

    /// <summary>Tokenized task data (data-driven methods such as OPD score parameters on it); <c>null</c> when none is given.</summary>
    public IReadOnlyList<TokenizedExample>? TaskExamples { get; init; }

    /// <summary>Where the strategy logs warnings (ignored config keys, rounding on merge…).</summary>
    public ILogger Logger { get; init; } = NullLogger.Instance;
}
