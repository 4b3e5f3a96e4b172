namespace FineTuning.Core.Data;

/// <summary>
/// Renders a conversation the way a model family's Hugging Face chat template does, split into trainable and
/// non-trainable segments.
/// </summary>
/// <remarks>
/// BOS: a template whose Hugging Face original writes the BOS token (llama3, llama2, mistral) emits it as text and
/// reports it in <see cref="BeginningOfSequenceText"/>; text rendered by such a template must be encoded with
/// <c>addSpecialTokens: false</c> so that the tokenizer does not add a second BOS. <see cref="ExampleFormatter"/> does this.
/// </remarks>
public interface IChatTemplate
{
    /// <summary>The registry name, for example "chatml" or "llama3".</summary>
    string Name { get; }

    /// <summary>The BOS text the template writes at the start of every rendering, or <see langword="null"/> when it leaves BOS to the tokenizer.</summary>
    string? BeginningOfSequenceText { get; }

    /// <summary>Renders a conversation.</summary>
    /// <param name="messages">The messages, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with the header that starts an assistant reply.</param>
    /// <returns>The rendered text as segments; concatenated they equal <see cref="RenderText"/>.</returns>
    /// <exception cref="ArgumentException">The conversation is empty or its role order is not allowed by the template.</exception>
    IReadOnlyList<ChatSegment> Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false);

    /// <summary>Renders a conversation to a single string.</summary>
    /// <param name="messages">The messages, in order.</param>
    /// <param name="addGenerationPrompt">Whether to end with the header that starts an assistant reply.</param>
    /// <returns>The rendered text.</returns>
    string RenderText(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false) =>
        string.Concat(Render(messages, addGenerationPrompt).Select(segment => segment.Text));
}
