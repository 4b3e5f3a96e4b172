using System.Globalization;

namespace FineTuning.Core.Strategies.Opd;

/// <summary>
/// How many scalars OPD (Optimal Parameter Decoupling) may train: an absolute count, or a fraction of the selectable
/// parameters (the projections of the decoder layers, plus the head when included).
/// </summary>
public readonly record struct OpdBudget
{
    private OpdBudget(long? count, double? fraction)
    {
        AbsoluteCount = count;
        Fraction = fraction;
    }

    /// <summary>The absolute count, or <c>null</c> for a fractional budget.</summary>
    public long? AbsoluteCount { get; }

    /// <summary>The fraction in (0, 1], or <c>null</c> for an absolute budget.</summary>
    public double? Fraction { get; }

    /// <summary>A budget of <paramref name="count"/> trainable scalars.</summary>
    /// <param name="count">1 or more.</param>
    /// <returns>The budget.</returns>
    public static OpdBudget Count(long count) => new(count, null);

    /// <summary>A budget of a fraction of the selectable parameters (rounded down, at least 1).</summary>
    /// <param name="fraction">In (0, 1].</param>
    /// <returns>The budget.</returns>
    public static OpdBudget Of(double fraction) => new(null, fraction);

    /// <summary>Parses <c>0.01</c> (a fraction: has a decimal point or exponent and is at most 1) or <c>5000</c> (a count).</summary>
    /// <param name="text">The text.</param>
    /// <returns>The budget.</returns>
    /// <exception cref="FormatException">The text is neither.</exception>
    public static OpdBudget Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        text = text.Trim();
        if (long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var count))
        {
            return Count(count);
        }

        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var fraction) && fraction is > 0 and <= 1)
        {
            return Of(fraction);
        }

        throw new FormatException($"a budget is a count (e.g. 5000) or a fraction in (0, 1] (e.g. 0.01); got '{text}'.");
    }

    /// <summary>The budget in scalars for a model with <paramref name="selectable"/> selectable parameters.</summary>
    /// <param name="selectable">The selectable parameter count.</param>
    /// <returns>The count, at most <paramref name="selectable"/>.</returns>
    public long Resolve(long selectable) =>
        Math.Min(selectable, AbsoluteCount ?? Math.Max(1, (long)Math.Floor(Fraction!.Value * selectable)));

    /// <summary>Checks the value.</summary>
    /// <param name="option">The option's name for the message.</param>
    /// <exception cref="InvalidOptionException">The count is below 1 or the fraction outside (0, 1].</exception>
    public void Validate(string option)
    {
        if (AbsoluteCount is { } count && count < 1)
        {
            throw new InvalidOptionException(option, $"a count must be 1 or more, got {count}.");
        }

        if (Fraction is { } f && !(f > 0 && f <= 1))
        {
            throw new InvalidOptionException(option, $"a fraction must be in (0, 1], got {f.ToString(CultureInfo.InvariantCulture)}.");
        }

        if (AbsoluteCount is null && Fraction is null)
        {
            throw new InvalidOptionException(option, "no budget given; use OpdBudget.Count(n) or OpdBudget.Of(fraction).");
        }
    }

    /// <summary>The budget as <see cref="Parse"/> reads it.</summary>
    /// <returns>The text.</returns>
    public override string ToString() =>
        AbsoluteCount?.ToString(CultureInfo.InvariantCulture) ?? Fraction?.ToString("R", CultureInfo.InvariantCulture) ?? "";
}
