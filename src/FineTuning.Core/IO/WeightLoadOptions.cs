namespace FineTuning.Core.IO;

/// <summary>
/// Options for <see cref="HuggingFaceWeights.Load"/>: which tensors may be present in the files without a matching
/// model tensor ("unexpected"), and which model tensors may be absent from the files ("missing").
/// </summary>
/// <remarks>
/// By default only keys ending in <c>rotary_emb.inv_freq</c> (a buffer old checkpoints saved) are ignored. For a
/// model that ties <c>lm_head.weight</c> to the embedding, add <c>lm_head.weight</c> to
/// <see cref="IgnoredUnexpectedNames"/> when the checkpoint stores it.
/// </remarks>
public sealed record WeightLoadOptions
{
    // Declared before Default: static initializers run in textual order and Default's instance initializer reads it.
    private static readonly IReadOnlyList<string> DefaultSuffixes = Array.AsReadOnly(["rotary_emb.inv_freq"]);

    private IReadOnlyList<string> _ignoredUnexpectedNames = [];
    private IReadOnlyList<string> _ignoredUnexpectedSuffixes = DefaultSuffixes;

    /// <summary>The suffixes ignored by default: <c>rotary_emb.inv_freq</c>.</summary>
    public static IReadOnlyList<string> DefaultIgnoredUnexpectedSuffixes => DefaultSuffixes;

    /// <summary>The default options.</summary>
    public static WeightLoadOptions Default { get; } = new();

    /// <summary>Exact names of file tensors that may have no model counterpart (for example <c>lm_head.weight</c> of a tied model).</summary>
    /// <exception cref="ArgumentException">Set to <see langword="null"/> or to a list holding a null or empty name.</exception>
    public IReadOnlyList<string> IgnoredUnexpectedNames
    {
        get => _ignoredUnexpectedNames;
        init => _ignoredUnexpectedNames = ValidateNames(value, nameof(IgnoredUnexpectedNames));
    }

    /// <summary>Name suffixes of file tensors that may have no model counterpart; <see cref="DefaultIgnoredUnexpectedSuffixes"/> by default.</summary>
    /// <exception cref="ArgumentException">Set to <see langword="null"/> or to a list holding a null or empty suffix.</exception>
    public IReadOnlyList<string> IgnoredUnexpectedSuffixes
    {
        get => _ignoredUnexpectedSuffixes;
        init => _ignoredUnexpectedSuffixes = ValidateNames(value, nameof(IgnoredUnexpectedSuffixes));
    }

    /// <summary>An extra predicate: file tensors for which it returns <see langword="true"/> may have no model counterpart.</summary>
    public Func<string, bool>? IgnoreUnexpected { get; init; }

    /// <summary>
    /// Model tensors for which this returns <see langword="true"/> may be absent from the files and keep their current
    /// values (for example adapter parameters added to a base model). <see langword="null"/>: every model tensor must be loaded.
    /// </summary>
    public Func<string, bool>? IgnoreMissing { get; init; }

    /// <summary>Whether a file tensor that has no model counterpart is ignored under these options.</summary>
    /// <param name="name">The tensor's name in the file.</param>
    /// <returns><see langword="true"/> when the tensor may be skipped.</returns>
    public bool IsIgnoredUnexpected(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (string ignored in _ignoredUnexpectedNames)
        {
            if (string.Equals(ignored, name, StringComparison.Ordinal))
            {
                return true;
            }
        }

        foreach (string suffix in _ignoredUnexpectedSuffixes)
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return IgnoreUnexpected?.Invoke(name) ?? false;
    }

    /// <summary>Whether a model tensor that is absent from the files is allowed under these options.</summary>
    /// <param name="name">The model tensor's name.</param>
    /// <returns><see langword="true"/> when the tensor may stay as it is.</returns>
    public bool IsIgnoredMissing(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return IgnoreMissing?.Invoke(name) ?? false;
    }

    private static IReadOnlyList<string> ValidateNames(IReadOnlyList<string> value, string propertyName)
    {
        ArgumentNullException.ThrowIfNull(value, propertyName);
        var copy = value.ToArray();
        if (copy.Any(string.IsNullOrEmpty))
        {
            throw new ArgumentException($"{propertyName} must not contain null or empty entries.", propertyName);
        }

        return Array.AsReadOnly(copy);
    }
}
