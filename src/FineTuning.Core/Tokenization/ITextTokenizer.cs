namespace FineTuning.Core.Tokenization;

/// <summary>
/// The library's single abstraction over a text tokenizer. Implementations wrap Microsoft.ML.Tokenizers and add the
/// Hugging Face conventions read from <c>tokenizer_config.json</c> (whether BOS is added, special token names).
/// </summary>
/// <remarks>
/// Special-token strings that appear in the text (for example <c>&lt;|endoftext|&gt;</c> or <c>&lt;|im_start|&gt;</c>)
/// encode to their ids instead of being split into ordinary pieces.
/// </remarks>
public interface ITextTokenizer
{
    /// <summary>Which kind of tokenizer file this tokenizer was built from.</summary>
    TokenizerKind Kind { get; }

    /// <summary>A human readable description of where the tokenizer came from (a file path, or "embedded GPT-2").</summary>
    string Source { get; }

    /// <summary>The number of token ids the tokenizer can produce (highest id + 1, added tokens included).</summary>
    int VocabularySize { get; }

    /// <summary>The id of the beginning-of-sequence token, when the tokenizer has one.</summary>
    int? BosTokenId { get; }

    /// <summary>The id of the end-of-sequence token, when the tokenizer has one.</summary>
    int? EosTokenId { get; }

    /// <summary>The id of the padding token, when the tokenizer configuration names one.</summary>
    int? PadTokenId { get; }

    /// <summary>The text of the beginning-of-sequence token (for example <c>&lt;s&gt;</c>), when known.</summary>
    string? BosToken { get; }

    /// <summary>The text of the end-of-sequence token (for example <c>&lt;/s&gt;</c>), when known.</summary>
    string? EosToken { get; }

    /// <summary>Whether <see cref="Encode"/> prepends the BOS token when special tokens are requested.</summary>
    bool AddBosToken { get; }

    /// <summary>Whether <see cref="Encode"/> appends the EOS token when special tokens are requested.</summary>
    bool AddEosToken { get; }

    /// <summary>The special tokens (text to id) that are recognised in input text and can be skipped when decoding.</summary>
    IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>The settings read from <c>tokenizer_config.json</c> (defaults when the file is absent).</summary>
    TokenizerConfig Config { get; }

    /// <summary>The default Jinja chat template text from <c>tokenizer_config.json</c>, or <see langword="null"/>.</summary>
    string? ChatTemplate { get; }

    /// <summary>Encodes text to token ids.</summary>
    /// <param name="text">The text to encode.</param>
    /// <param name="addSpecialTokens">
    /// When <see langword="true"/>, adds BOS/EOS as the configuration asks (<see cref="AddBosToken"/>, <see cref="AddEosToken"/>).
    /// Special-token strings in <paramref name="text"/> are recognised either way.
    /// </param>
    /// <returns>The token ids.</returns>
    IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true);

    /// <summary>Decodes token ids back to text.</summary>
    /// <param name="ids">The token ids.</param>
    /// <param name="skipSpecialTokens">When <see langword="true"/>, special tokens are left out of the text.</param>
    /// <returns>The decoded text.</returns>
    string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false);

    /// <summary>Looks up the id of a single token (a vocabulary entry or a special token).</summary>
    /// <param name="token">The token text as stored in the vocabulary.</param>
    /// <returns>The id, or <see langword="null"/> when the token is unknown.</returns>
    int? TokenToId(string token);
}
