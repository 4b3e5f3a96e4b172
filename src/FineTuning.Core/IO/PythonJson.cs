using System.Globalization;
using System.Text;

namespace FineTuning.Core.IO;

/// <summary>Writes JSON as Python's <c>json.dumps</c> does with its defaults (<c>", "</c> and <c>": "</c> separators, ASCII only, floats as <c>repr</c>).</summary>
internal static class PythonJson
{
    /// <summary>A JSON object of already-formatted values, in the given order: <c>{"a": 1, "b": "x"}</c>.</summary>
    public static string Object(IEnumerable<(string Key, string Value)> members) =>
        "{" + string.Join(", ", members.Select(m => $"{String(m.Key)}: {m.Value}")) + "}";

    /// <summary>A JSON string with <c>ensure_ascii</c> escaping.</summary>
    public static string String(string value)
    {
        var builder = new StringBuilder("\"");
        foreach (var c in value)
        {
            builder.Append(c switch
            {
                '"' => "\\\"",
                '\\' => "\\\\",
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '\b' => "\\b",
                '\f' => "\\f",
                _ when c < 0x20 || c > 0x7e => $"\\u{(int)c:x4}",
                _ => c.ToString(),
            });
        }

        return builder.Append('"').ToString();
    }

    /// <summary>An integer.</summary>
    public static string Integer(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>A list of integers, e.g. <c>[4096, 4096]</c>.</summary>
    public static string IntegerList(IEnumerable<long> values) => "[" + string.Join(", ", values.Select(Integer)) + "]";

    /// <summary>
    /// Python's <c>repr(float)</c>: the shortest digits that round-trip, positional when the decimal exponent is in
    /// [−4, 16) (always with a fractional part, e.g. <c>1.0</c>, <c>0.0001</c>), scientific otherwise with at least
    /// two exponent digits (<c>1e-05</c>, <c>1.5e+16</c>); <c>NaN</c>, <c>Infinity</c>, <c>-Infinity</c> as json.dumps writes them.
    /// </summary>
    public static string Float(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }

        if (value == 0)
        {
            return double.IsNegative(value) ? "-0.0" : "0.0";
        }

        // .NET's default formatting gives the shortest round-trip digits too, in its own layout: take them apart.
        var text = value.ToString("R", CultureInfo.InvariantCulture);
        var sign = text[0] == '-' ? "-" : "";
        text = text.TrimStart('-');
        var exponent = 0;
        var e = text.IndexOfAny(['E', 'e']);
        if (e >= 0)
        {
            exponent = int.Parse(text[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
            text = text[..e];
        }

        var dot = text.IndexOf('.', StringComparison.Ordinal);
        var integerPart = dot < 0 ? text : text[..dot];
        var all = integerPart + (dot < 0 ? "" : text[(dot + 1)..]);
        var significant = all.TrimStart('0');
        var point = integerPart.Length - (all.Length - significant.Length) + exponent; // value = 0.digits × 10^point
        var digits = significant.TrimEnd('0');
        string body;
        if (point <= -4 || point > 16)
        {
            var scientific = point - 1;
            body = digits[..1] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (scientific < 0 ? "-" : "+") + Math.Abs(scientific).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (point <= 0)
        {
            body = "0." + new string('0', -point) + digits;
        }
        else if (point >= digits.Length)
        {
            body = digits + new string('0', point - digits.Length) + ".0";
        }
        else
        {
            body = digits[..point] + "." + digits[point..];
        }

        return sign + body;
    }
    /// <summary>
    /// Python's <c>json.dumps(value, indent=2, sort_keys=True)</c> (the layout PEFT and AdapterHub write their configs
    /// in): dictionaries with ordinally sorted keys, lists, strings (ASCII-escaped), booleans, <c>null</c>, integers
    /// (<see cref="int"/>, <see cref="long"/>) and floats (<see cref="double"/>, written as Python's <c>repr</c>).
    /// Empty containers stay inline.
    /// </summary>
    /// <param name="value">The value.</param>
    /// <returns>The JSON text.</returns>
    public static string Indented(object? value)
    {
        var text = new StringBuilder();
        WriteIndented(text, value, 0);
        return text.ToString();
    }

    private static void WriteIndented(StringBuilder text, object? value, int depth)
    {
        switch (value)
        {
            case null:
                text.Append("null");
                break;
            case bool b:
                text.Append(b ? "true" : "false");
                break;
            case int i:
                text.Append(Integer(i));
                break;
            case long l:
                text.Append(Integer(l));
                break;
            case double d:
                text.Append(Float(d));
                break;
            case string s:
                text.Append(String(s));
                break;
            case IDictionary<string, object?> map:
                WriteContainer(text, '{', '}', map.OrderBy(p => p.Key, StringComparer.Ordinal).ToList(), depth, (p, d) =>
                {
                    text.Append(String(p.Key)).Append(": ");
                    WriteIndented(text, p.Value, d);
                });
                break;
            case System.Collections.IEnumerable list:
                WriteContainer(text, '[', ']', list.Cast<object?>().ToList(), depth, (item, d) => WriteIndented(text, item, d));
                break;
            default:
                throw new ArgumentException($"Cannot write a {value.GetType().Name} as JSON.", nameof(value));
        }
    }

    private static void WriteContainer<T>(StringBuilder text, char open, char close, List<T> items, int depth, Action<T, int> writeItem)
    {
        text.Append(open);
        if (items.Count > 0)
        {
            for (var i = 0; i < items.Count; i++)
            {
                text.Append(i == 0 ? "\n" : ",\n").Append(' ', 2 * (depth + 1));
                writeItem(items[i], depth + 1);
            }

            text.Append('\n').Append(' ', 2 * depth);
        }

        text.Append(close);
    }
}
