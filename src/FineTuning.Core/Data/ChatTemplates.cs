using System.Text.RegularExpressions;
using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Data;

/// <summary>
/// The built-in chat templates. .NET has no Jinja engine, so each template is code that reproduces the output of a
/// model family's Hugging Face template; <see cref="Detect(TokenizerConfig)"/> picks one from tokenizer_config.json.
/// </summary>
public static class ChatTemplates
{
    /// <summary>ChatML: Qwen2, Qwen2.5, SmolLM2.</summary>
    public const string ChatMl = "chatml";

    /// <summary>Llama 3 instruct header format.</summary>
    public const string Llama3 = "llama3";

    /// <summary>Llama 2 chat <c>[INST]</c>/<c>&lt;&lt;SYS&gt;&gt;</c> format.</summary>
    public const string Llama2 = "llama2";

    /// <summary>Mistral instruct <c>[INST]</c> format.</summary>
    public const string Mistral = "mistral";

    /// <summary>Zephyr / TinyLlama-chat <c>&lt;|user|&gt;</c> format.</summary>
    public const string Zephyr = "zephyr";

    /// <summary>No markers: contents concatenated.</summary>
    public const string Plain = "plain";

    private static readonly Regex ChatMlDefaultSystem = new(
        @"<\|im_start\|>system\\n(?<text>[^'""<\\]*)<\|im_end\|>",
        RegexOptions.CultureInvariant);

    /// <summary>The names accepted by <see cref="Get"/>.</summary>
    public static IReadOnlyList<string> Names { get; } = [ChatMl, Llama3, Llama2, Mistral, Zephyr, Plain];

    /// <summary>Returns a built-in template by name (case-insensitive).</summary>
    /// <param name="name">One of <see cref="Names"/>.</param>
    /// <param name="options">Template settings; <see cref="ChatTemplateOptions.Default"/> when omitted.</param>
    /// <returns>The template.</returns>
    /// <exception cref="ArgumentException">The name is unknown; the message lists the valid names.</exception>
    public static IChatTemplate Get(string name, ChatTemplateOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        options ??= ChatTemplateOptions.Default;
        return name.Trim().ToLowerInvariant() switch
        {
            ChatMl => new ChatMlTemplate(options),
            Llama3 => new Llama3ChatTemplate(options),
            Llama2 => new Llama2ChatTemplate(options),
            Mistral => new MistralChatTemplate(options),
            Zephyr => new ZephyrChatTemplate(options),
            Plain => new PlainChatTemplate(),
            _ => throw new ArgumentException($"Unknown chat template '{name}'; known templates: {string.Join(", ", Names)}.", nameof(name)),
        };
    }

    /// <summary>
    /// The template a tokenizer's data should use: the named one when <paramref name="name"/> is given (with the
    /// tokenizer's BOS/EOS texts), otherwise the one <see cref="Detect(TokenizerConfig)"/> finds, otherwise chatml.
    /// </summary>
    /// <param name="name">A template name from <see cref="Names"/>, or <see langword="null"/> to detect.</param>
    /// <param name="config">The tokenizer configuration.</param>
    /// <returns>The template.</returns>
    /// <exception cref="ArgumentException">The name is unknown.</exception>
    public static IChatTemplate Resolve(string? name, TokenizerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return name is not null
            ? Get(name, new ChatTemplateOptions { BosToken = config.BosToken, EosToken = config.EosToken })
            : Detect(config) ?? Get(ChatMl);
    }

    /// <summary>
    /// Identifies the template family from the Jinja <c>chat_template</c> of a tokenizer_config.json, by its markers:
    /// <c>&lt;|im_start|&gt;</c> (chatml, with the template's built-in default system message if it has one),
    /// <c>&lt;|start_header_id|&gt;</c> (llama3), <c>&lt;|user|&gt;</c> (zephyr), <c>[INST]</c> with <c>&lt;&lt;SYS&gt;&gt;</c> (llama2)
    /// and <c>[INST]</c> alone (mistral).
    /// </summary>
    /// <param name="config">The tokenizer configuration.</param>
    /// <returns>The matching template, or <see langword="null"/> when there is no chat template or it is not recognised.</returns>
    public static IChatTemplate? Detect(TokenizerConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        return Detect(config.ChatTemplate, config);
    }

    /// <summary>Identifies the template family from Jinja chat template text; see <see cref="Detect(TokenizerConfig)"/>.</summary>
    /// <param name="jinjaTemplate">The template text, or <see langword="null"/>.</param>
    /// <param name="config">Optional tokenizer configuration, whose BOS/EOS token texts are passed to the template.</param>
    /// <returns>The matching template, or <see langword="null"/>.</returns>
    public static IChatTemplate? Detect(string? jinjaTemplate, TokenizerConfig? config = null)
    {
        if (string.IsNullOrWhiteSpace(jinjaTemplate))
        {
            return null;
        }

        var options = new ChatTemplateOptions { BosToken = config?.BosToken, EosToken = config?.EosToken };
        if (jinjaTemplate.Contains("<|im_start|>", StringComparison.Ordinal))
        {
            Match match = ChatMlDefaultSystem.Match(jinjaTemplate);
            string? defaultSystem = match.Success ? match.Groups["text"].Value : null;
            return new ChatMlTemplate(options with { DefaultSystemMessage = defaultSystem });
        }

        if (jinjaTemplate.Contains("<|start_header_id|>", StringComparison.Ordinal))
        {
            return new Llama3ChatTemplate(options);
        }

        if (jinjaTemplate.Contains("<|user|>", StringComparison.Ordinal))
        {
            return new ZephyrChatTemplate(options);
        }

        if (jinjaTemplate.Contains("[INST]", StringComparison.Ordinal))
        {
            return jinjaTemplate.Contains("<<SYS>>", StringComparison.Ordinal)
                ? new Llama2ChatTemplate(options)
                : new MistralChatTemplate(options);
        }

        return null;
    }
}
