namespace FineTuning.Core.Data;

/// <summary>The chat roles the library understands.</summary>
public static class ChatRoles
{
    /// <summary>Instructions that set up the conversation.</summary>
    public const string System = "system";

    /// <summary>A message written by the user.</summary>
    public const string User = "user";

    /// <summary>A reply written by the model; the part a chat fine-tune learns.</summary>
    public const string Assistant = "assistant";

    /// <summary>All valid roles.</summary>
    public static IReadOnlyList<string> All { get; } = [System, User, Assistant];

    /// <summary>Whether <paramref name="role"/> is one of <see cref="All"/> (exact, lower case).</summary>
    /// <param name="role">The role to check.</param>
    /// <returns><see langword="true"/> for a valid role.</returns>
    public static bool IsValid(string? role) => role is System or User or Assistant;
}
