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

    /// <summary>
    /// Runs a command that must be a usage error: exit code 2, an <c>error:</c> line naming <paramref name="option"/>,
    /// and nothing written to <paramref name="output"/>.
    /// </summary>
    public static void AssertUsageError(string mistake, string option, string output, params string[] args)
    {
        var (code, _, error) = Run(args);
        Xunit.Assert.True(code == 2, $"{mistake}: exit code {code}, {error}");
        Xunit.Assert.StartsWith("error: ", error);
        Xunit.Assert.Contains(option, Lines(error)[0]);
        Xunit.Assert.False(Directory.Exists(output), mistake);
    }
}

/// <summary>A shared temporary folder holding a random tiny base made by <c>finetune init --preset tiny --seed 3</c>.</summary>
public abstract class CliFixture : IDisposable
{
    private readonly TempDirectory temp = new();

    protected CliFixture()
    {
        Base = Folder("base");
        CliRunner.Succeed("init", Base, "--preset", "tiny", "--seed", "3");
    }

    public string Base { get; }

    public string Folder(string name) => Path.Combine(temp.Path, name);

    public void Dispose()
    {
        temp.Dispose();
        GC.SuppressFinalize(this);
    }
}
