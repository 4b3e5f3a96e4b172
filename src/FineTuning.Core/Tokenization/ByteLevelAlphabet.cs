using System.Text;

namespace FineTuning.Core.Tokenization;

/// <summary>
/// The GPT-2 byte-to-unicode table used by byte-level BPE vocabularies: printable bytes map to themselves and the
/// others to code points from U+0100 upwards, so that every byte sequence has a visible string form (space is "Ġ").
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildTable();

    /// <summary>Converts raw bytes to their byte-level string form.</summary>
    public static string ToTokenString(ReadOnlySpan<byte> bytes)
    {
        var builder = new StringBuilder(bytes.Length);
        foreach (byte b in bytes)
        {
            builder.Append(ByteToChar[b]);
        }

        return builder.ToString();
    }

    /// <summary>The byte-level string form of a single byte.</summary>
    public static char ToChar(byte b) => ByteToChar[b];

    private static char[] BuildTable()
    {
        var printable = new List<int>();
        for (int b = '!'; b <= '~'; b++)
        {
            printable.Add(b);
        }

        for (int b = 0xA1; b <= 0xAC; b++)
        {
            printable.Add(b);
        }

        for (int b = 0xAE; b <= 0xFF; b++)
        {
            printable.Add(b);
        }

        var table = new char[256];
        var isPrintable = new bool[256];
        foreach (int b in printable)
        {
            table[b] = (char)b;
            isPrintable[b] = true;
        }

        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            if (!isPrintable[b])
            {
                table[b] = (char)(256 + next);
                next++;
            }
        }

        return table;
    }
}
