namespace FineTuning.Core.Data;

/// <summary>
/// Zephyr / TinyLlama-chat: <c>&lt;|{role}|&gt;\n{content}&lt;/s&gt;\n</c> per message, generation prompt
/// <c>&lt;|assistant|&gt;\n</c>. The template writes no BOS; the tokenizer adds it (add_bos_token).
/// </summary>
internal sealed class ZephyrChatTemplate(ChatTemplateOptions options) : IChatTemplate
{
    /// <inheritdoc />
    public string Name => ChatTemplates.Zephyr;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => null;

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        SegmentBuilder.RequireMessages(messages, Name);
        string eos = options.EosToken ?? "</s>";
        var builder = new SegmentBuilder();
        if (messages[0].Role != ChatRoles.System && options.DefaultSystemMessage is not null)
        {
            builder.Fixed($"<|{ChatRoles.System}|>\n{options.DefaultSystemMessage}{eos}\n");
        }

        foreach (ChatMessage message in messages)
        {
            builder.Fixed($"<|{message.Role}|>\n");
            builder.Add(message.Content + eos, message.Role == ChatRoles.Assistant);
            builder.Fixed("\n");
        }

        if (addGenerationPrompt)
        {
            builder.Fixed($"<|{ChatRoles.Assistant}|>\n");
        }

        return builder.Build();
    }
}
