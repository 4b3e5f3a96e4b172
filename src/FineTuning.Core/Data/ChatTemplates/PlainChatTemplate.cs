namespace FineTuning.Core.Data;

/// <summary>
/// No markers: message contents are concatenated as they are (assistant contents trainable). Useful for base
/// models and prompt/completion data. The generation prompt adds nothing.
/// </summary>
internal sealed class PlainChatTemplate : IChatTemplate
{
    /// <inheritdoc />
    public string Name => ChatTemplates.Plain;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => null;

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        SegmentBuilder.RequireMessages(messages, Name);
        var builder = new SegmentBuilder();
        foreach (ChatMessage message in messages)
        {
            builder.Add(message.Content, message.Role == ChatRoles.Assistant);
        }

        return builder.Build();
    }
}
