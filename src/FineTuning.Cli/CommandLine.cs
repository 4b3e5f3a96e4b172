using System.Globalization;

namespace FineTuning.Cli;

/// <summary>
/// A parsed command line: positional arguments and <c>--name value</c> / <c>--flag</c> options. Every option a
/// command reads is recorded, so an option nobody read is reported as unknown.
/// </summary>
internal sealed class CommandLine
{
    private readonly Dictionary<string, List<string>> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> flags = new(StringComparer.Ordinal);
    private readonly HashSet<string> consumed = new(StringComparer.Ordinal);
    private readonly List<string> positional = [];

    public CommandLine(IEnumerable<string> args, IReadOnlySet<string> flagNames)
    {
        using var e = args.GetEnumerator();
        while (e.MoveNext())
        {
            var arg = e.Current;
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg == "--")
            {
                positional.Add(arg);
                continue;
            }

            var name = arg[2..];
            string? inlineValue = null;
            var eq = name.IndexOf('=');
            if (eq >= 0)
            {
                inlineValue = name[(eq + 1)..];
                name = name[..eq];
            }

            if (flagNames.Contains(name))
            {
                flags.Add(name);
                continue;
            }

            var value = inlineValue ?? (e.MoveNext() ? e.Current : throw new UsageException($"Option --{name} needs a value."));
            if (!options.TryGetValue(name, out var list))
            {
                options[name] = list = [];
            }

            list.Add(value);
        }
    }

    public string Positional(int index, string name) =>
        index < positional.Count ? positional[index] : throw new UsageException($"Missing argument <{name}>.");

    public bool Flag(string name)
    {
        consumed.Add(name);
        return flags.Contains(name);
    }

    public string? String(string name)
    {
        consumed.Add(name);
        return options.TryGetValue(name, out var values) ? values[^1] : null;
    }

    public IReadOnlyList<string> Strings(string name)
    {
        consumed.Add(name);
        return options.TryGetValue(name, out var values) ? values : [];
    }

    public int? Int(string name, int min = int.MinValue)
    {
        var text = String(name);
        if (text is null)
        {
            return null;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min)
        {
            throw new UsageException($"Option --{name} expects an integer >= {min}, got '{text}'.");
        }

        return value;
    }

    public long? Long(string name)
    {
        var text = String(name);
        if (text is null)
        {
            return null;
        }

        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new UsageException($"Option --{name} expects an integer, got '{text}'.");
    }

    public double? Double(string name)
    {
        var text = String(name);
        if (text is null)
        {
            return null;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && double.IsFinite(value)
            ? value
            : throw new UsageException($"Option --{name} expects a number, got '{text}'.");
    }

    /// <summary>Throws for options or extra positional arguments that the command did not read.</summary>
    public void RejectUnknown(int positionalCount)
    {
        var unknown = options.Keys.Concat(flags).Where(name => !consumed.Contains(name)).ToList();
        if (unknown.Count > 0)
        {
            throw new UsageException($"Unknown option(s): {string.Join(", ", unknown.Select(u => "--" + u))}.");
        }

        if (positional.Count > positionalCount)
        {
            throw new UsageException($"Unexpected argument '{positional[positionalCount]}'.");
        }
    }
}
