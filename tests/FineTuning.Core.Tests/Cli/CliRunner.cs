using FineTuning.Cli;

namespace FineTuning.Core.Tests.Cli;

/// <summary>Runs the <c>finetune</c> command in-process.</summary>
internal static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = CliApplication.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>Runs a command that must succeed and returns its output.</summary>
    public static string Succeed(params string[] args)
    {
        var (code, output, error) = Run(args);
        Xunit.Assert.True(code == 0, $"finetune {string.Join(' ', args)} exited with {code}: {error}");
        return output;
    }

    public static string[] Lines(string text) => text.TrimEnd().Split('\n').Select(l => l.TrimEnd('\r')).ToArray();

    public static string LastLine(string text) => Lines(text)[^1];
}
