using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Data;

/// <summary>
/// Turns training examples into token ids plus a trainable mask:
/// text is trainable throughout; for prompt/completion only the completion (and EOS) is; for chats only the
/// assistant segments of the chat template are.
/// </summary>
/// <remarks>
/// Each segment is encoded on its own with <c>addSpecialTokens: false</c> and the pieces are concatenated, so the
/// mask lines up exactly with segment boundaries. BOS is prepended (never trainable: nothing predicts the first
/// token) only when the tokenizer asks for it and the rendered text does not already start with the BOS text, so a
/// template that writes BOS itself (llama3, llama2, mistral) never gets a second one.
/// </remarks>
public sealed class ExampleFormatter
{
    private readonly ITextTokenizer _tokenizer;
    private readonly IChatTemplate _template;
    private readonly ExampleFormatterOptions _options;

    /// <summary>Creates a formatter.</summary>
    /// <param name="tokenizer">The tokenizer.</param>
    /// <param name="template">The chat template used for <see cref="ChatExample"/>s.</param>
    /// <param name="options">Settings; <see cref="ExampleFormatterOptions.Default"/> when omitted.</param>
    public ExampleFormatter(ITextTokenizer tokenizer, IChatTemplate template, ExampleFormatterOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        ArgumentNullException.ThrowIfNull(template);
        _tokenizer = tokenizer;
        _template = template;
        _options = options ?? ExampleFormatterOptions.Default;
        if (_options.MaxSequenceLength is <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), _options.MaxSequenceLength, "MaxSequenceLength must be positive.");
        }
    }

    /// <summary>The tokenizer in use.</summary>
    public ITextTokenizer Tokenizer => _tokenizer;

    /// <summary>The chat template in use.</summary>
    public IChatTemplate Template => _template;

    /// <summary>Tokenizes one example.</summary>
    /// <param name="example">The example.</param>
    /// <returns>The token ids and trainable mask.</returns>
    public TokenizedExample Format(TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        IReadOnlyList<ChatSegment> segments = example switch
        {
            TextExample text => [new ChatSegment(text.Text, true)],
            PromptCompletionExample pc => [new ChatSegment(pc.Prompt, false), new ChatSegment(pc.Completion, true)],
            ChatExample chat => _template.Render(chat.Messages, addGenerationPrompt: false),
            _ => throw new ArgumentException($"Unsupported example type {example.GetType().Name}.", nameof(example)),
        };

        bool appendEos = example switch
        {
            TextExample => _options.AppendEosToText,
            PromptCompletionExample => _options.AppendEosToCompletion,
            _ => false,
        };

        var ids = new List<int>();
        var mask = new List<bool>();
        string? bos = _tokenizer.BosToken;
        bool startsWithBos = bos is not null && segments.Count > 0 && segments[0].Text.StartsWith(bos, StringComparison.Ordinal);
        if (_tokenizer.AddBosToken && _tokenizer.BosTokenId is int bosId && !startsWithBos)
        {
            ids.Add(bosId);
            mask.Add(false);
        }

        foreach (ChatSegment segment in segments)
        {
            if (segment.Text.Length == 0)
            {
                continue;
            }

            IReadOnlyList<int> pieceIds = _tokenizer.Encode(segment.Text, addSpecialTokens: false);
            ids.AddRange(pieceIds);
            for (int i = 0; i < pieceIds.Count; i++)
            {
                mask.Add(segment.IsTrainable);
            }
        }

        if (appendEos && _tokenizer.EosTokenId is int eosId)
        {
            ids.Add(eosId);
            mask.Add(true);
        }

        if (_options.MaxSequenceLength is int max && ids.Count > max)
        {
            ids.RemoveRange(max, ids.Count - max);
            mask.RemoveRange(max, mask.Count - max);
        }

        return new TokenizedExample(ids, mask);
    }

    /// <summary>Tokenizes a sequence of examples.</summary>
    /// <param name="examples">The examples.</param>
    /// <returns>The tokenized examples, in order.</returns>
    public IReadOnlyList<TokenizedExample> FormatAll(IEnumerable<TrainingExample> examples)
    {
        ArgumentNullException.ThrowIfNull(examples);
        return examples.Select(Format).ToList();
    }
}
