namespace FineTuning.Core.Data;

/// <summary>One message of a conversation.</summary>
public sealed record ChatMessage
{
    /// <summary>Creates a message.</summary>
    /// <param name="role">"system", "user" or "assistant" (see <see cref="ChatRoles"/>).</param>
    /// <param name="content">The message text.</param>
    /// <exception cref="ArgumentException">The role is not one of the three valid roles.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="content"/> is null.</exception>
    public ChatMessage(string role, string content)
    {
        if (!ChatRoles.IsValid(role))
        {
            throw new ArgumentException($"Unknown chat role '{role}'; expected one of: {string.Join(", ", ChatRoles.All)}.", nameof(role));
        }

        ArgumentNullException.ThrowIfNull(content);
        Role = role;
        Content = content;
    }

    /// <summary>The role: "system", "user" or "assistant".</summary>
    public string Role { get; }

    /// <summary>The message text.</summary>
    public string Content { get; }

    /// <summary>Creates a system message.</summary>
    /// <param name="content">The message text.</param>
    /// <returns>The message.</returns>
    public static ChatMessage System(string content) => new(ChatRoles.System, content);

    /// <summary>Creates a user message.</summary>
    /// <param name="content">The message text.</param>
    /// <returns>The message.</returns>
    public static ChatMessage User(string content) => new(ChatRoles.User, content);

    /// <summary>Creates an assistant message.</summary>
    /// <param name="content">The message text.</param>
    /// <returns>The message.</returns>
    public static ChatMessage Assistant(string content) => new(ChatRoles.Assistant, content);
}
