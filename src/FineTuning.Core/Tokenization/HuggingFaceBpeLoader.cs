using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace FineTuning.Core.Tokenization;

/// <summary>
/// Reads a Hugging Face <c>tokenizer.json</c> holding a byte-level BPE model and builds a Microsoft.ML.Tokenizers
/// <see cref="BpeTokenizer"/> from it (version 2.0.1 has no loader of its own for this format).
/// </summary>
internal static class HuggingFaceBpeLoader
{
    /// <summary>Loads the tokenizer.</summary>
    /// <param name="path">Path of tokenizer.json.</param>
    /// <param name="config">Settings from tokenizer_config.json.</param>
    /// <exception cref="TokenizerFormatException">The file is malformed or uses a feature this loader does not support.</exception>
    public static ITextTokenizer Load(string path, TokenizerConfig config)
    {
        using JsonDocument document = ParseFile(path);
        JsonElement root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, "expected a JSON object at the top level.");
        }

        JsonElement model = RequireObject(root, "model", path);
        string modelType = model.TryGetProperty("type", out JsonElement typeElement) && typeElement.ValueKind == JsonValueKind.String
            ? typeElement.GetString()!
            : (model.TryGetProperty("merges", out _) ? "BPE" : "(missing)");
        if (!string.Equals(modelType, "BPE", StringComparison.Ordinal))
        {
            throw new TokenizerFormatException(path, $"field 'model.type' is '{modelType}'; only 'BPE' models are supported.");
        }

        Dictionary<string, int> vocab = ReadVocab(model, path);
        List<string> merges = ReadMerges(model, path);
        var (addedTokens, specialTokens) = ReadAddedTokens(root, path);
        Normalizer? normalizer = ReadNormalizer(root, path);
        string pattern = ReadPreTokenizerPattern(root, path);
        string? postProcessorBos = ReadPostProcessorBos(root);

        var regex = new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(regex, addedTokens.Count > 0 ? addedTokens : null),
            SpecialTokens = addedTokens.Count > 0 ? addedTokens : null,
            Normalizer = normalizer,
        };

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(options);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new TokenizerFormatException(path, $"the BPE model could not be built: {ex.Message}", ex);
        }

        int maxId = Math.Max(vocab.Count == 0 ? -1 : vocab.Values.Max(), addedTokens.Count == 0 ? -1 : addedTokens.Values.Max());
        int? Lookup(string token) => addedTokens.TryGetValue(token, out int a) ? a : vocab.TryGetValue(token, out int v) ? v : null;

        var metadata = new TokenizerMetadata(
            TokenizerKind.HuggingFaceByteLevelBpe,
            path,
            config,
            maxId + 1,
            specialTokens,
            FallbackBosToken: postProcessorBos,
            FallbackEosToken: null,
            DefaultAddBos: postProcessorBos is not null);
        return new WrappedTokenizer(bpe, text => bpe.EncodeToIds(text), Lookup, metadata);
    }

    /// <summary>
    /// Whether the file describes a byte-level model (a ByteLevel pre-tokenizer or decoder). Files that cannot be
    /// read count as byte-level so that <see cref="Load"/> reports their problem.
    /// </summary>
    public static bool IsByteLevel(string path)
    {
        try
        {
            using JsonDocument document = ParseFile(path);
            JsonElement root = document.RootElement;
            return root.ValueKind != JsonValueKind.Object
                || ContainsType(root, "pre_tokenizer", "ByteLevel")
                || ContainsType(root, "decoder", "ByteLevel");
        }
        catch (TokenizerFormatException)
        {
            return true;
        }
    }

    private static JsonDocument ParseFile(string path)
    {
        try
        {
            using FileStream stream = File.OpenRead(path);
            return JsonDocument.Parse(stream, new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException ex)
        {
            throw new TokenizerFormatException(path, $"not valid JSON ({ex.Message})", ex);
        }
    }

    private static bool ContainsType(JsonElement root, string field, string type)
    {
        if (!root.TryGetProperty(field, out JsonElement element) || element.ValueKind != JsonValueKind.Object)
        {
            return false;
        }

        return EnumerateSteps(element).Any(step => TypeOf(step) == type);
    }

    /// <summary>The element itself, or the members of a Sequence (pretokenizers, normalizers, decoders or processors).</summary>
    private static IEnumerable<JsonElement> EnumerateSteps(JsonElement element)
    {
        if (TypeOf(element) != "Sequence")
        {
            yield return element;
            yield break;
        }

        foreach (string listName in new[] { "pretokenizers", "normalizers", "decoders", "processors" })
        {
            if (element.TryGetProperty(listName, out JsonElement list) && list.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement item in list.EnumerateArray())
                {
                    foreach (JsonElement inner in EnumerateSteps(item))
                    {
                        yield return inner;
                    }
                }
            }
        }
    }

    private static string? TypeOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String
            ? type.GetString()
            : null;

    private static JsonElement RequireObject(JsonElement parent, string name, string path)
    {
        if (!parent.TryGetProperty(name, out JsonElement value) || value.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, $"field '{name}' is missing or is not an object.");
        }

        return value;
    }

    private static Dictionary<string, int> ReadVocab(JsonElement model, string path)
    {
        if (!model.TryGetProperty("vocab", out JsonElement vocabElement) || vocabElement.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, "field 'model.vocab' is missing or is not an object of token to id.");
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocabElement.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw new TokenizerFormatException(path, $"field 'model.vocab' maps '{entry.Name}' to a value that is not a non-negative integer id.");
            }

            vocab[entry.Name] = id;
        }

        return vocab;
    }

    /// <summary>Reads merges in either the "a b" string form or the newer ["a", "b"] array form, as "a b" strings.</summary>
    private static List<string> ReadMerges(JsonElement model, string path)
    {
        var merges = new List<string>();
        if (!model.TryGetProperty("merges", out JsonElement mergesElement) || mergesElement.ValueKind == JsonValueKind.Null)
        {
            return merges;
        }

        if (mergesElement.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerFormatException(path, "field 'model.merges' must be a list.");
        }

        int index = 0;
        foreach (JsonElement merge in mergesElement.EnumerateArray())
        {
            string left;
            string right;
            if (merge.ValueKind == JsonValueKind.String)
            {
                string[] parts = merge.GetString()!.Split(' ');
                if (parts.Length != 2 || parts[0].Length == 0 || parts[1].Length == 0)
                {
                    throw new TokenizerFormatException(path, $"entry {index} of 'model.merges' is not of the form \"left right\".");
                }

                (left, right) = (parts[0], parts[1]);
            }
            else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2
                && merge[0].ValueKind == JsonValueKind.String && merge[1].ValueKind == JsonValueKind.String)
            {
                (left, right) = (merge[0].GetString()!, merge[1].GetString()!);
                if (left.Contains(' ') || right.Contains(' '))
                {
                    throw new TokenizerFormatException(path, $"entry {index} of 'model.merges' contains a space, which a byte-level vocabulary never does.");
                }
            }
            else
            {
                throw new TokenizerFormatException(path, $"entry {index} of 'model.merges' must be a \"left right\" string or a [\"left\", \"right\"] pair.");
            }

            merges.Add(left + " " + right);
            index++;
        }

        return merges;
    }

    private static (Dictionary<string, int> All, Dictionary<string, int> Special) ReadAddedTokens(JsonElement root, string path)
    {
        var all = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        if (!root.TryGetProperty("added_tokens", out JsonElement list) || list.ValueKind == JsonValueKind.Null)
        {
            return (all, special);
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerFormatException(path, "field 'added_tokens' must be a list.");
        }

        foreach (JsonElement token in list.EnumerateArray())
        {
            if (token.ValueKind != JsonValueKind.Object
                || !token.TryGetProperty("id", out JsonElement id) || !id.TryGetInt32(out int idValue)
                || !token.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
            {
                throw new TokenizerFormatException(path, "each entry of 'added_tokens' needs an integer 'id' and a string 'content'.");
            }

            string text = content.GetString()!;
            all[text] = idValue;
            if (token.TryGetProperty("special", out JsonElement isSpecial) && isSpecial.ValueKind == JsonValueKind.True)
            {
                special[text] = idValue;
            }
        }

        return (all, special);
    }

    private static Normalizer? ReadNormalizer(JsonElement root, string path)
    {
        if (!root.TryGetProperty("normalizer", out JsonElement element) || element.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        NormalizationForm? form = null;
        foreach (JsonElement step in EnumerateSteps(element))
        {
            NormalizationForm stepForm = TypeOf(step) switch
            {
                "NFC" => NormalizationForm.FormC,
                "NFD" => NormalizationForm.FormD,
                "NFKC" => NormalizationForm.FormKC,
                "NFKD" => NormalizationForm.FormKD,
                var other => throw new TokenizerFormatException(path, $"field 'normalizer' uses type '{other}'; only NFC, NFD, NFKC and NFKD are supported for byte-level BPE."),
            };
            if (form is not null && form != stepForm)
            {
                throw new TokenizerFormatException(path, "field 'normalizer' chains different Unicode forms, which is not supported.");
            }

            form = stepForm;
        }

        return form is null ? null : new UnicodeFormNormalizer(form.Value);
    }

    /// <summary>Turns the pre_tokenizer description into one .NET regex that splits text the same way.</summary>
    private static string ReadPreTokenizerPattern(JsonElement root, string path)
    {
        if (!root.TryGetProperty("pre_tokenizer", out JsonElement element) || element.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(path, "field 'pre_tokenizer' is missing; only byte-level BPE (a ByteLevel pre-tokenizer) is supported.");
        }

        List<JsonElement> steps = EnumerateSteps(element).ToList();
        int byteLevelIndex = steps.FindIndex(s => TypeOf(s) == "ByteLevel");
        if (byteLevelIndex < 0 || byteLevelIndex != steps.Count - 1)
        {
            throw new TokenizerFormatException(path, "field 'pre_tokenizer' must end with a ByteLevel step; only byte-level BPE tokenizer.json files are supported.");
        }

        JsonElement byteLevel = steps[byteLevelIndex];
        if (byteLevel.TryGetProperty("add_prefix_space", out JsonElement prefix) && prefix.ValueKind == JsonValueKind.True)
        {
            throw new TokenizerFormatException(path, "field 'pre_tokenizer' ByteLevel.add_prefix_space = true is not supported.");
        }

        bool useRegex = !byteLevel.TryGetProperty("use_regex", out JsonElement useRegexElement) || useRegexElement.ValueKind != JsonValueKind.False;
        List<JsonElement> before = steps.Take(byteLevelIndex).ToList();

        if (before.Count == 0)
        {
            return useRegex ? Gpt2Vocabulary.Pattern : @"[\s\S]+";
        }

        if (before.Count == 1 && TypeOf(before[0]) == "Split" && !useRegex)
        {
            return ReadSplitPattern(before[0], path);
        }

        if (before.Count == 1 && TypeOf(before[0]) == "Digits" && useRegex)
        {
            // Digits then the GPT-2 regex on each piece: digits become their own pieces, and a whitespace run just
            // before a digit ends a piece, so the "(?!\S)" look-ahead must also accept a following digit.
            bool individual = before[0].TryGetProperty("individual_digits", out JsonElement ind) && ind.ValueKind == JsonValueKind.True;
            return @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|" + (individual ? @"\p{N}" : @"\p{N}+") + @"| ?[^\s\p{L}\p{N}]+|\s+(?![^\s\p{N}])|\s+";
        }

        string described = string.Join(", ", before.Select(s => TypeOf(s) ?? "?"));
        throw new TokenizerFormatException(path, $"field 'pre_tokenizer' combines [{described}] with ByteLevel(use_regex={useRegex.ToString().ToLowerInvariant()}), which is not supported; expected ByteLevel alone, Split(Regex) + ByteLevel(use_regex=false) or Digits + ByteLevel.");
    }

    private static string ReadSplitPattern(JsonElement split, string path)
    {
        if (!split.TryGetProperty("pattern", out JsonElement pattern) || pattern.ValueKind != JsonValueKind.Object
            || !pattern.TryGetProperty("Regex", out JsonElement regex) || regex.ValueKind != JsonValueKind.String)
        {
            throw new TokenizerFormatException(path, "field 'pre_tokenizer' Split step needs a 'pattern' of the form {\"Regex\": \"...\"}.");
        }

        if (split.TryGetProperty("behavior", out JsonElement behavior) && behavior.ValueKind == JsonValueKind.String && behavior.GetString() != "Isolated")
        {
            throw new TokenizerFormatException(path, $"field 'pre_tokenizer' Split behavior '{behavior.GetString()}' is not supported; only 'Isolated'.");
        }

        if (split.TryGetProperty("invert", out JsonElement invert) && invert.ValueKind == JsonValueKind.True)
        {
            throw new TokenizerFormatException(path, "field 'pre_tokenizer' Split with invert = true is not supported.");
        }

        string dotnetPattern = RemovePossessiveQuantifiers(regex.GetString()!);
        try
        {
            _ = new Regex(dotnetPattern);
        }
        catch (ArgumentException ex)
        {
            throw new TokenizerFormatException(path, $"the Split regex of 'pre_tokenizer' is not valid in .NET: {ex.Message}", ex);
        }

        return dotnetPattern;
    }

    /// <summary>
    /// .NET regexes have no possessive quantifiers (<c>*+</c>, <c>++</c>, <c>?+</c>, <c>{n}+</c>); the patterns used
    /// by tokenizers only use them for speed, so the greedy form splits the same text the same way.
    /// </summary>
    internal static string RemovePossessiveQuantifiers(string pattern)
    {
        var builder = new StringBuilder(pattern.Length);
        bool inClass = false;
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            if (c == '\\' && i + 1 < pattern.Length)
            {
                builder.Append(c).Append(pattern[i + 1]);
                i++;
                if (pattern[i] is 'p' or 'P' && i + 1 < pattern.Length && pattern[i + 1] == '{')
                {
                    // Copy a Unicode category such as \p{L} whole, so its '}' is not taken for a quantifier.
                    int close = pattern.IndexOf('}', i + 1);
                    int end = close < 0 ? pattern.Length - 1 : close;
                    builder.Append(pattern, i + 1, end - i);
                    i = end;
                }

                continue;
            }

            if (inClass)
            {
                inClass = c != ']';
                builder.Append(c);
                continue;
            }

            if (c == '[')
            {
                inClass = true;
                builder.Append(c);
                continue;
            }

            builder.Append(c);
            bool isQuantifier = c is '*' or '+' or '}' || (c == '?' && i > 0 && pattern[i - 1] != '(');
            if (isQuantifier && i + 1 < pattern.Length && pattern[i + 1] == '+')
            {
                i++; // drop the possessive '+'
            }
        }

        return builder.ToString();
    }

    /// <summary>The token a TemplateProcessing post-processor puts before the text (the BOS of Llama 3), if any.</summary>
    private static string? ReadPostProcessorBos(JsonElement root)
    {
        if (!root.TryGetProperty("post_processor", out JsonElement element) || element.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        foreach (JsonElement step in EnumerateSteps(element))
        {
            if (TypeOf(step) != "TemplateProcessing" || !step.TryGetProperty("single", out JsonElement single)
                || single.ValueKind != JsonValueKind.Array || single.GetArrayLength() == 0)
            {
                continue;
            }

            JsonElement first = single[0];
            if (first.ValueKind == JsonValueKind.Object && first.TryGetProperty("SpecialToken", out JsonElement special)
                && special.TryGetProperty("id", out JsonElement id) && id.ValueKind == JsonValueKind.String)
            {
                return id.GetString();
            }
        }

        return null;
    }
}
