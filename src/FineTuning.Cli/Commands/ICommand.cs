namespace FineTuning.Cli.Commands;

/// <summary>One <c>finetune</c> sub-command.</summary>
internal interface ICommand
{
    /// <summary>Options that take no value.</summary>
    IReadOnlySet<string> Flags { get; }

    /// <summary>Runs the command; returns the exit code.</summary>
    int Execute(CommandLine commandLine, TextWriter output, TextWriter error);
}
