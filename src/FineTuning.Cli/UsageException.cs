namespace FineTuning.Cli;

/// <summary>The command line is wrong; the message says what was expected. Exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
