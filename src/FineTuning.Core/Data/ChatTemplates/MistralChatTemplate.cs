namespace FineTuning.Core.Data;

/// <summary>
/// Mistral instruct (v0.1/v0.2 Hugging Face template): <c>&lt;s&gt;[INST] {user} [/INST]{assistant}&lt;/s&gt;[INST] {user} [/INST]</c>.
/// The original template rejects system messages; here a leading system message is put before the first user
/// message, separated by a blank line, as Mistral's later templates do.
/// </summary>
internal sealed class MistralChatTemplate(ChatTemplateOptions options) : IChatTemplate
{
    /// <inheritdoc />
    public string Name => ChatTemplates.Mistral;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => options.BosToken ?? "<s>";

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        var (system, turns) = SegmentBuilder.SplitAlternating(messages, Name, options.DefaultSystemMessage);
        string eos = options.EosToken ?? "</s>";
        var builder = new SegmentBuilder();
        builder.Fixed(BeginningOfSequenceText!);
        for (int i = 0; i < turns.Count; i++)
        {
            ChatMessage message = turns[i];
            if (message.Role == ChatRoles.User)
            {
                string content = i == 0 && system is not null ? $"{system}\n\n{message.Content}" : message.Content;
                builder.Fixed($"[INST] {content} [/INST]");
            }
            else
            {
                builder.Add(message.Content + eos, trainable: true);
            }
        }

        return builder.Build();
    }
}
