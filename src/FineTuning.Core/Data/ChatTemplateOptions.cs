namespace FineTuning.Core.Data;

/// <summary>Settings shared by the built-in chat templates.</summary>
public sealed record ChatTemplateOptions
{
    /// <summary>The default options: no default system message, each template's usual BOS/EOS text.</summary>
    public static ChatTemplateOptions Default { get; } = new();

    /// <summary>
    /// A system message to render when the conversation does not start with one, as some model templates do
    /// (Qwen2.5: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."). Ignored by "plain".
    /// </summary>
    public string? DefaultSystemMessage { get; init; }

    /// <summary>Overrides the BOS text the template emits (<c>&lt;s&gt;</c> or <c>&lt;|begin_of_text|&gt;</c>).</summary>
    public string? BosToken { get; init; }

    /// <summary>Overrides the end-of-turn text of templates that use the EOS token (<c>&lt;/s&gt;</c> for llama2, mistral, zephyr).</summary>
    public string? EosToken { get; init; }
}
