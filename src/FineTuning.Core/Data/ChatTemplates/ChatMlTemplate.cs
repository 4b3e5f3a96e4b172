namespace FineTuning.Core.Data;

/// <summary>
/// ChatML (Qwen2/2.5, SmolLM2): <c>&lt;|im_start|&gt;{role}\n{content}&lt;|im_end|&gt;\n</c> per message,
/// generation prompt <c>&lt;|im_start|&gt;assistant\n</c>. When the first message is not a system message and a
/// default system message is configured, it is rendered first, as Qwen's and SmolLM2's templates do.
/// </summary>
internal sealed class ChatMlTemplate(ChatTemplateOptions options) : IChatTemplate
{
    private const string Start = "<|im_start|>";
    private const string End = "<|im_end|>";

    /// <inheritdoc />
    public string Name => ChatTemplates.ChatMl;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => null;

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        SegmentBuilder.RequireMessages(messages, Name);
        var builder = new SegmentBuilder();
        if (messages[0].Role != ChatRoles.System && options.DefaultSystemMessage is not null)
        {
            builder.Fixed($"{Start}{ChatRoles.System}\n{options.DefaultSystemMessage}{End}\n");
        }

        foreach (ChatMessage message in messages)
        {
            builder.Fixed($"{Start}{message.Role}\n");
            builder.Add(message.Content + End, message.Role == ChatRoles.Assistant);
            builder.Fixed("\n");
        }

        if (addGenerationPrompt)
        {
            builder.Fixed($"{Start}{ChatRoles.Assistant}\n");
        }

        return builder.Build();
    }
}
