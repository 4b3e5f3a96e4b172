namespace FineTuning.Core;

/// <summary>
/// An option value, or a combination of options, that cannot work. Thrown when a strategy, trainer or
/// <c>FineTuner</c> is built, before any work starts; <see cref="Option"/> names the offending option.
/// </summary>
public sealed class InvalidOptionException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="option">The option's name as the user wrote it, e.g. <c>LoraOptions.R</c> or <c>--lr</c>.</param>
    /// <param name="message">What is wrong and what was expected.</param>
    public InvalidOptionException(string option, string message)
        : base($"{option}: {message}", option)
    {
        Option = option;
    }

    /// <summary>The option at fault.</summary>
    public string Option { get; }
}
