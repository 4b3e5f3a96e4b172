using System.Text.RegularExpressions;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// Which modules an adapter wraps (PEFT's <c>target_modules</c>, also used for <c>exclude_modules</c>): a list of
/// names, a regular expression, or the <c>"all-linear"</c> shorthand.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>A list entry matches a module whose full name equals it or ends with <c>"." + entry</c>
/// (<c>q_proj</c> matches <c>model.layers.0.self_attn.q_proj</c>).</item>
/// <item>A pattern must match the whole name (Python's <c>re.fullmatch</c>): <c>.*q_proj</c> matches
/// <c>model.layers.0.self_attn.q_proj</c>, <c>q_proj</c> does not.</item>
/// <item><c>all-linear</c> (any case) selects every Linear except the output head <c>lm_head</c>.</item>
/// </list>
/// A string converts implicitly as PEFT reads a string (<c>"all-linear"</c> or a pattern), an array as a list.
/// </remarks>
public sealed class LoraTargetModules
{
    /// <summary>PEFT's shorthand for every Linear except the output head.</summary>
    public const string AllLinearShorthand = "all-linear";

    private static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);
    private readonly Regex? regex;

    private LoraTargetModules(IReadOnlyList<string>? names, string? pattern, bool allLinear)
    {
        Names = names;
        Pattern = pattern;
        IsAllLinear = allLinear;
        if (pattern is not null)
        {
            regex = FullMatchRegex(pattern);
        }
    }

    /// <summary>Every Linear except <c>lm_head</c>.</summary>
    public static LoraTargetModules AllLinear { get; } = new(null, null, allLinear: true);

    /// <summary>The names of a list selection (sorted, distinct), or <c>null</c> for a pattern or <see cref="AllLinear"/>.</summary>
    public IReadOnlyList<string>? Names { get; }

    /// <summary>The regular expression of a pattern selection, or <c>null</c>.</summary>
    public string? Pattern { get; }

    /// <summary>Whether this is the <c>all-linear</c> shorthand.</summary>
    public bool IsAllLinear { get; }

    /// <summary>Whether this is a list of names (the only kind <see cref="LoraOptions.LayersToTransform"/> works with).</summary>
    public bool IsList => Names is not null;

    /// <summary>Selects modules by exact name or <c>"."</c>-suffix.</summary>
    /// <param name="names">Module names such as <c>q_proj</c> or full names.</param>
    /// <returns>The selection.</returns>
    /// <exception cref="ArgumentException">A name is empty.</exception>
    public static LoraTargetModules FromNames(IEnumerable<string> names)
    {
        ArgumentNullException.ThrowIfNull(names);
        var list = names.ToList();
        if (list.Any(string.IsNullOrWhiteSpace))
        {
            throw new ArgumentException("Module names must not be empty.", nameof(names));
        }

        return new LoraTargetModules(list.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray(), null, allLinear: false);
    }

    /// <summary>Selects modules by exact name or <c>"."</c>-suffix.</summary>
    /// <param name="names">Module names such as <c>q_proj</c> or full names.</param>
    /// <returns>The selection.</returns>
    public static LoraTargetModules FromNames(params string[] names) => FromNames((IEnumerable<string>)names);

    /// <summary>Selects the modules whose whole full name matches a regular expression.</summary>
    /// <param name="pattern">The expression, e.g. <c>.*\.(q|v)_proj</c>.</param>
    /// <returns>The selection.</returns>
    /// <exception cref="ArgumentException">The expression is empty or invalid.</exception>
    public static LoraTargetModules FromPattern(string pattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(pattern);
        return new LoraTargetModules(null, pattern, allLinear: false);
    }

    /// <summary>Reads a string as PEFT does: <c>all-linear</c> (any case) is the shorthand, anything else a pattern.</summary>
    /// <param name="value">The string.</param>
    /// <returns>The selection.</returns>
    public static LoraTargetModules Parse(string value)
    {
        ArgumentException.ThrowIfNullOrEmpty(value);
        return string.Equals(value, AllLinearShorthand, StringComparison.OrdinalIgnoreCase) ? AllLinear : FromPattern(value);
    }

    /// <summary>A list selection.</summary>
    /// <param name="names">Module names.</param>
    public static implicit operator LoraTargetModules(string[] names) => FromNames(names);

    /// <summary>A string selection, read as by <see cref="Parse"/>.</summary>
    /// <param name="value">The string.</param>
    public static implicit operator LoraTargetModules(string value) => Parse(value);

    /// <summary>
    /// Whether a module's full name is selected by a list or a pattern (<see cref="AllLinear"/> needs the module's
    /// type and is resolved by the strategy, so it throws here).
    /// </summary>
    /// <param name="fullName">A full module name such as <c>model.layers.0.self_attn.q_proj</c>.</param>
    /// <returns><c>true</c> when selected.</returns>
    public bool Matches(string fullName)
    {
        ArgumentNullException.ThrowIfNull(fullName);
        if (IsAllLinear)
        {
            throw new InvalidOperationException("'all-linear' depends on the module type; the strategy resolves it.");
        }

        return regex is not null ? regex.IsMatch(fullName) : MatchesName(Names!, fullName);
    }

    /// <summary>Whether a full name equals an entry or ends with <c>"." + entry</c> (PEFT's list rule).</summary>
    internal static bool MatchesName(IEnumerable<string> names, string fullName) =>
        names.Any(n => fullName == n || fullName.EndsWith("." + n, StringComparison.Ordinal));

    /// <summary>A regex that matches a whole string, as Python's <c>re.fullmatch</c>.</summary>
    internal static Regex FullMatchRegex(string pattern)
    {
        try
        {
            return new Regex("^(?:" + pattern + @")\z", RegexOptions.CultureInvariant, MatchTimeout);
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"'{pattern}' is not a valid regular expression: {ex.Message}", nameof(pattern), ex);
        }
    }

    /// <inheritdoc />
    public override string ToString() =>
        IsAllLinear ? AllLinearShorthand : Pattern ?? "[" + string.Join(", ", Names!) + "]";
}
