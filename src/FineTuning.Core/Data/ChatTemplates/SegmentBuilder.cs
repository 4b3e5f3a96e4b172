namespace FineTuning.Core.Data;

/// <summary>Collects rendered text, joining neighbouring pieces that have the same trainable flag.</summary>
internal sealed class SegmentBuilder
{
    private readonly List<ChatSegment> _segments = [];

    /// <summary>Appends non-trainable text.</summary>
    public SegmentBuilder Fixed(string text) => Add(text, trainable: false);

    /// <summary>Appends text that is trainable when <paramref name="trainable"/> is true.</summary>
    public SegmentBuilder Add(string text, bool trainable)
    {
        if (text.Length == 0)
        {
            return this;
        }

        if (_segments.Count > 0 && _segments[^1].IsTrainable == trainable)
        {
            _segments[^1] = new ChatSegment(_segments[^1].Text + text, trainable);
        }
        else
        {
            _segments.Add(new ChatSegment(text, trainable));
        }

        return this;
    }

    /// <summary>The collected segments.</summary>
    public IReadOnlyList<ChatSegment> Build() => _segments.ToArray();

    /// <summary>Throws when there is nothing to render.</summary>
    public static void RequireMessages(IReadOnlyList<ChatMessage> messages, string templateName)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ArgumentException($"The '{templateName}' chat template needs at least one message.", nameof(messages));
        }

        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i] is null)
            {
                throw new ArgumentException($"Message {i} is null.", nameof(messages));
            }
        }
    }

    /// <summary>
    /// Splits off a leading system message and checks that the rest alternates user/assistant starting with user,
    /// as the Llama 2 and Mistral templates require.
    /// </summary>
    public static (string? System, IReadOnlyList<ChatMessage> Turns) SplitAlternating(IReadOnlyList<ChatMessage> messages, string templateName, string? defaultSystem)
    {
        RequireMessages(messages, templateName);
        bool hasSystem = messages[0].Role == ChatRoles.System;
        string? system = hasSystem ? messages[0].Content : defaultSystem;
        var turns = messages.Skip(hasSystem ? 1 : 0).ToList();
        for (int i = 0; i < turns.Count; i++)
        {
            string expected = i % 2 == 0 ? ChatRoles.User : ChatRoles.Assistant;
            if (turns[i].Role != expected)
            {
                throw new ArgumentException(
                    $"The '{templateName}' chat template needs an optional first system message followed by alternating user/assistant messages starting with user; message {i + (hasSystem ? 1 : 0)} is '{turns[i].Role}'.",
                    nameof(messages));
            }
        }

        return (system, turns);
    }
}
