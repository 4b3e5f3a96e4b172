using System.Text.Json;

namespace FineTuning.Core.Data;

/// <summary>
/// Reads JSONL training data: one JSON object per line, each <c>{"text": …}</c>, <c>{"prompt": …, "completion": …}</c>
/// or <c>{"messages": [{"role": …, "content": …}, …]}</c>. Blank lines are skipped; other fields are ignored.
/// </summary>
public static class JsonlDataset
{
    private const string ExpectedShapes =
        "expected one of {\"text\": string}, {\"prompt\": string, \"completion\": string} or {\"messages\": [{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string}, …]}";

    /// <summary>Reads every example of a JSONL file.</summary>
    /// <param name="path">The file path.</param>
    /// <returns>The examples in file order.</returns>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="JsonlFormatException">A line is not a valid example; the exception names the file and line.</exception>
    public static IReadOnlyList<TrainingExample> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"JSONL data file '{path}' does not exist.", path);
        }

        using var reader = new StreamReader(path);
        return Parse(reader, path);
    }

    /// <summary>Reads every example from a reader.</summary>
    /// <param name="reader">The JSONL text.</param>
    /// <param name="sourceName">The name to report in errors (usually the file path).</param>
    /// <returns>The examples in order.</returns>
    /// <exception cref="JsonlFormatException">A line is not a valid example.</exception>
    public static IReadOnlyList<TrainingExample> Parse(TextReader reader, string sourceName)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(sourceName);
        var examples = new List<TrainingExample>();
        int lineNumber = 0;
        string? line;
        while ((line = reader.ReadLine()) is not null)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            examples.Add(ParseLine(line, sourceName, lineNumber));
        }

        return examples;
    }

    /// <summary>Parses a single JSONL line.</summary>
    /// <param name="line">The JSON text of the line.</param>
    /// <param name="sourceName">The name to report in errors.</param>
    /// <param name="lineNumber">The 1-based line number to report in errors.</param>
    /// <returns>The example.</returns>
    /// <exception cref="JsonlFormatException">The line is not a valid example.</exception>
    public static TrainingExample ParseLine(string line, string sourceName, int lineNumber)
    {
        ArgumentNullException.ThrowIfNull(line);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException ex)
        {
            throw new JsonlFormatException(sourceName, lineNumber, $"not valid JSON ({ex.Message}); {ExpectedShapes}.", ex);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw Error($"found a JSON {Describe(root.ValueKind)} instead of an object; {ExpectedShapes}.");
            }

            bool hasText = root.TryGetProperty("text", out JsonElement text);
            bool hasPrompt = root.TryGetProperty("prompt", out JsonElement prompt);
            bool hasCompletion = root.TryGetProperty("completion", out JsonElement completion);
            bool hasMessages = root.TryGetProperty("messages", out JsonElement messages);
            int shapes = (hasText ? 1 : 0) + (hasPrompt || hasCompletion ? 1 : 0) + (hasMessages ? 1 : 0);
            if (shapes == 0)
            {
                throw Error($"the object has none of the fields \"text\", \"prompt\"/\"completion\" or \"messages\"; {ExpectedShapes}.");
            }

            if (shapes > 1)
            {
                throw Error($"the object mixes the fields of more than one shape; {ExpectedShapes}.");
            }

            if (hasText)
            {
                return new TextExample(RequireString(text, "text"));
            }

            if (hasMessages)
            {
                return new ChatExample(ReadMessages(messages));
            }

            if (!hasPrompt || !hasCompletion)
            {
                throw Error($"a prompt/completion example needs both \"prompt\" and \"completion\"; \"{(hasPrompt ? "completion" : "prompt")}\" is missing.");
            }

            return new PromptCompletionExample(RequireString(prompt, "prompt"), RequireString(completion, "completion"));
        }

        string RequireString(JsonElement value, string field) =>
            value.ValueKind == JsonValueKind.String
                ? value.GetString()!
                : throw Error($"field \"{field}\" must be a string, found {Describe(value.ValueKind)}.");

        IReadOnlyList<ChatMessage> ReadMessages(JsonElement value)
        {
            if (value.ValueKind != JsonValueKind.Array)
            {
                throw Error($"field \"messages\" must be a list of {{\"role\", \"content\"}} objects, found {Describe(value.ValueKind)}.");
            }

            if (value.GetArrayLength() == 0)
            {
                throw Error("field \"messages\" is empty; a conversation needs at least one message.");
            }

            var result = new List<ChatMessage>();
            int index = 0;
            foreach (JsonElement item in value.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Object)
                {
                    throw Error($"messages[{index}] must be an object with \"role\" and \"content\", found {Describe(item.ValueKind)}.");
                }

                if (!item.TryGetProperty("role", out JsonElement role) || role.ValueKind != JsonValueKind.String)
                {
                    throw Error($"messages[{index}] needs a string \"role\" (system, user or assistant).");
                }

                if (!item.TryGetProperty("content", out JsonElement content) || content.ValueKind != JsonValueKind.String)
                {
                    throw Error($"messages[{index}] needs a string \"content\".");
                }

                string roleText = role.GetString()!;
                if (!ChatRoles.IsValid(roleText))
                {
                    throw Error($"messages[{index}] has unknown role \"{roleText}\"; expected one of: {string.Join(", ", ChatRoles.All)}.");
                }

                result.Add(new ChatMessage(roleText, content.GetString()!));
                index++;
            }

            return result;
        }

        JsonlFormatException Error(string problem) => new(sourceName, lineNumber, problem);
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "object",
        JsonValueKind.Array => "list",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
