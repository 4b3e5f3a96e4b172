namespace FineTuning.Core.Data;

/// <summary>
/// Llama 2 chat: <c>&lt;s&gt;[INST] &lt;&lt;SYS&gt;&gt;\n{system}\n&lt;&lt;/SYS&gt;&gt;\n\n{user} [/INST] {assistant} &lt;/s&gt;</c>,
/// then <c>&lt;s&gt;[INST] {user} [/INST]</c> for later turns. Contents are stripped as in the Hugging Face template.
/// The rendering after a user turn already ends with <c>[/INST]</c>, so the generation prompt adds nothing.
/// </summary>
internal sealed class Llama2ChatTemplate(ChatTemplateOptions options) : IChatTemplate
{
    /// <inheritdoc />
    public string Name => ChatTemplates.Llama2;

    /// <inheritdoc />
    public string? BeginningOfSequenceText => options.BosToken ?? "<s>";

    /// <inheritdoc />
    public IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false)
    {
        var (system, turns) = SegmentBuilder.SplitAlternating(messages, Name, options.DefaultSystemMessage);
        string bos = BeginningOfSequenceText!;
        string eos = options.EosToken ?? "</s>";
        var builder = new SegmentBuilder();
        for (int i = 0; i < turns.Count; i++)
        {
            ChatMessage message = turns[i];
            if (message.Role == ChatRoles.User)
            {
                string content = i == 0 && system is not null
                    ? $"<<SYS>>\n{system}\n<</SYS>>\n\n{message.Content}"
                    : message.Content;
                builder.Fixed($"{bos}[INST] {content.Trim()} [/INST]");
            }
            else
            {
                builder.Fixed(" ");
                builder.Add($"{message.Content.Trim()} {eos}", trainable: true);
            }
        }

        return builder.Build();
    }
}
