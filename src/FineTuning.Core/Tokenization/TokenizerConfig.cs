using System.Text.Json;

namespace FineTuning.Core.Tokenization;

/// <summary>
/// The parts of a Hugging Face <c>tokenizer_config.json</c> that fine-tuning needs. Every property is optional in
/// the file; <see cref="Default"/> is used when the file is missing.
/// </summary>
public sealed record TokenizerConfig
{
    /// <summary>The configuration used when no <c>tokenizer_config.json</c> exists: every value unset.</summary>
    public static TokenizerConfig Default { get; } = new();

    /// <summary><c>add_bos_token</c>: whether encoding prepends BOS; <see langword="null"/> when the file does not say.</summary>
    public bool? AddBosToken { get; init; }

    /// <summary><c>add_eos_token</c>: whether encoding appends EOS; <see langword="null"/> when the file does not say.</summary>
    public bool? AddEosToken { get; init; }

    /// <summary><c>bos_token</c> text (a plain string or the <c>content</c> of an AddedToken object).</summary>
    public string? BosToken { get; init; }

    /// <summary><c>eos_token</c> text.</summary>
    public string? EosToken { get; init; }

    /// <summary><c>pad_token</c> text.</summary>
    public string? PadToken { get; init; }

    /// <summary><c>unk_token</c> text.</summary>
    public string? UnknownToken { get; init; }

    /// <summary>The default Jinja <c>chat_template</c> (the one named "default" when the file holds a list).</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>Every chat template by name; a single string template is stored under "default".</summary>
    public IReadOnlyDictionary<string, string> ChatTemplates { get; init; } = new Dictionary<string, string>();

    /// <summary><c>model_max_length</c>, or <see langword="null"/> when absent or the "unlimited" sentinel (values above <see cref="int.MaxValue"/>).</summary>
    public int? ModelMaxLength { get; init; }

    /// <summary><c>tokenizer_class</c>, for example <c>LlamaTokenizer</c> or <c>GPT2Tokenizer</c>.</summary>
    public string? TokenizerClass { get; init; }

    /// <summary>Tokens listed in <c>added_tokens_decoder</c> (content to id).</summary>
    public IReadOnlyDictionary<string, int> AddedTokens { get; init; } = new Dictionary<string, int>();

    /// <summary>The subset of <see cref="AddedTokens"/> marked <c>"special": true</c>.</summary>
    public IReadOnlyCollection<string> SpecialAddedTokens { get; init; } = Array.Empty<string>();

    /// <summary>Reads <c>tokenizer_config.json</c>; returns <see cref="Default"/> when the file does not exist.</summary>
    /// <param name="path">The path of the file.</param>
    /// <returns>The parsed configuration.</returns>
    /// <exception cref="TokenizerFormatException">The file is not valid JSON or a field has the wrong type.</exception>
    public static TokenizerConfig Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            return Default;
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses the JSON text of a <c>tokenizer_config.json</c>.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourceName">The file name to quote in error messages.</param>
    /// <returns>The parsed configuration.</returns>
    /// <exception cref="TokenizerFormatException">The text is not valid JSON or a field has the wrong type.</exception>
    public static TokenizerConfig Parse(string json, string sourceName = "tokenizer_config.json")
    {
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException ex)
        {
            throw new TokenizerFormatException(sourceName, $"not valid JSON ({ex.Message})", ex);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new TokenizerFormatException(sourceName, "expected a JSON object at the top level.");
            }

            var templates = ReadChatTemplates(root, sourceName);
            var (added, special) = ReadAddedTokens(root, sourceName);
            return new TokenizerConfig
            {
                AddBosToken = ReadBool(root, "add_bos_token", sourceName),
                AddEosToken = ReadBool(root, "add_eos_token", sourceName),
                BosToken = ReadToken(root, "bos_token", sourceName),
                EosToken = ReadToken(root, "eos_token", sourceName),
                PadToken = ReadToken(root, "pad_token", sourceName),
                UnknownToken = ReadToken(root, "unk_token", sourceName),
                ChatTemplates = templates,
                ChatTemplate = templates.TryGetValue("default", out string? t) ? t : null,
                ModelMaxLength = ReadMaxLength(root, sourceName),
                TokenizerClass = ReadString(root, "tokenizer_class", sourceName),
                AddedTokens = added,
                SpecialAddedTokens = special,
            };
        }
    }

    private static bool? ReadBool(JsonElement root, string name, string source)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new TokenizerFormatException(source, $"field '{name}' must be true or false, found {value.ValueKind}."),
        };
    }

    private static string? ReadString(JsonElement root, string name, string source)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : throw new TokenizerFormatException(source, $"field '{name}' must be a string, found {value.ValueKind}.");
    }

    /// <summary>Reads a token that is either a plain string or an AddedToken object with a "content" field.</summary>
    private static string? ReadToken(JsonElement root, string name, string source)
    {
        if (!root.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Object
            && value.TryGetProperty("content", out JsonElement content)
            && content.ValueKind == JsonValueKind.String)
        {
            return content.GetString();
        }

        throw new TokenizerFormatException(source, $"field '{name}' must be a string or an object with a string 'content', found {value.ValueKind}.");
    }

    private static int? ReadMaxLength(JsonElement root, string source)
    {
        if (!root.TryGetProperty("model_max_length", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Number)
        {
            throw new TokenizerFormatException(source, $"field 'model_max_length' must be a number, found {value.ValueKind}.");
        }

        double length = value.GetDouble();
        return length is > 0 and <= int.MaxValue ? (int)length : null;
    }

    private static Dictionary<string, string> ReadChatTemplates(JsonElement root, string source)
    {
        var templates = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!root.TryGetProperty("chat_template", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return templates;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            templates["default"] = value.GetString()!;
            return templates;
        }

        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new TokenizerFormatException(source, $"field 'chat_template' must be a string or a list of {{name, template}} objects, found {value.ValueKind}.");
        }

        foreach (JsonElement item in value.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Object
                || !item.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String
                || !item.TryGetProperty("template", out JsonElement template) || template.ValueKind != JsonValueKind.String)
            {
                throw new TokenizerFormatException(source, "each entry of 'chat_template' must be an object with string 'name' and 'template' fields.");
            }

            templates[name.GetString()!] = template.GetString()!;
        }

        return templates;
    }

    private static (Dictionary<string, int> Added, List<string> Special) ReadAddedTokens(JsonElement root, string source)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        var special = new List<string>();
        if (!root.TryGetProperty("added_tokens_decoder", out JsonElement value) || value.ValueKind == JsonValueKind.Null)
        {
            return (added, special);
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new TokenizerFormatException(source, "field 'added_tokens_decoder' must be an object mapping ids to token objects.");
        }

        foreach (JsonProperty entry in value.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, out int id)
                || entry.Value.ValueKind != JsonValueKind.Object
                || !entry.Value.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
            {
                throw new TokenizerFormatException(source, $"entry '{entry.Name}' of 'added_tokens_decoder' must map an integer id to an object with a string 'content'.");
            }

            string text = content.GetString()!;
            added[text] = id;
            if (entry.Value.TryGetProperty("special", out JsonElement isSpecial) && isSpecial.ValueKind == JsonValueKind.True)
            {
                special.Add(text);
            }
        }

        return (added, special);
    }
}
