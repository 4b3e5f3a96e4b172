namespace FineTuning.Core.Data;

/// <summary>
/// Llama 3 instruct: <c>&lt;|begin_of_text|&gt;</c>, then per message
/// <c>&lt;|start_header_id|&gt;{role}&lt;|end_header_id|&gt;\n\n{content trimmed}&lt;|eot_id|&gt;</c>; generation
/// prompt is the assistant header. This is the Llama 3.0 template; 3.1+ templates also write a dated system header.
/// </summary>
internal sealed class Llama3ChatTemplate(ChatTemplateOptions options) : IChatTemplate
{
    private const string EndOfTurn = "<|eot_id|>";

    /// <inheritdoc />
    public string Name => ChatTemplates.Llama3;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => options.BosToken ?? "<|begin_of_text|>";

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        SegmentBuilder.RequireMessages(messages, Name);
        var builder = new SegmentBuilder();
        builder.Fixed(BeginningOfSequenceText!);
        if (messages[0].Role != ChatRoles.System && options.DefaultSystemMessage is not null)
        {
            builder.Fixed(Header(ChatRoles.System) + options.DefaultSystemMessage.Trim() + EndOfTurn);
        }

        foreach (ChatMessage message in messages)
        {
            builder.Fixed(Header(message.Role));
            builder.Add(message.Content.Trim() + EndOfTurn, message.Role == ChatRoles.Assistant);
        }

        if (addGenerationPrompt)
        {
            builder.Fixed(Header(ChatRoles.Assistant));
        }

        return builder.Build();
    }

    private static string Header(string role) => $"<|start_header_id|>{role}<|end_header_id|>\n\n";
}
