using Microsoft.ML.Tokenizers;

namespace FineTuning.Core.Tokenization;

/// <summary>
/// The one <see cref="ITextTokenizer"/> implementation: a Microsoft.ML.Tokenizers <see cref="Tokenizer"/> plus the
/// Hugging Face settings (BOS/EOS policy, special tokens) that the library does not carry itself.
/// </summary>
internal sealed class WrappedTokenizer : ITextTokenizer
{
    private readonly Tokenizer _inner;
    private readonly Func<string, IReadOnlyList<int>> _encodeWithoutBosEos;
    private readonly Func<string, int?> _lookup;
    private readonly HashSet<int> _specialIds;

    /// <summary>Creates the wrapper.</summary>
    /// <param name="inner">The Microsoft.ML.Tokenizers tokenizer.</param>
    /// <param name="encodeWithoutBosEos">Encodes text (special-token strings recognised) without adding BOS or EOS.</param>
    /// <param name="lookup">Looks up a single token's id.</param>
    /// <param name="metadata">Everything else the interface exposes.</param>
    public WrappedTokenizer(Tokenizer inner, Func<string, IReadOnlyList<int>> encodeWithoutBosEos, Func<string, int?> lookup, TokenizerMetadata metadata)
    {
        _inner = inner;
        _encodeWithoutBosEos = encodeWithoutBosEos;
        _lookup = lookup;
        Kind = metadata.Kind;
        Source = metadata.Source;
        Config = metadata.Config;
        VocabularySize = metadata.VocabularySize;
        SpecialTokens = metadata.SpecialTokens;
        _specialIds = new HashSet<int>(metadata.SpecialTokens.Values);

        BosToken = metadata.Config.BosToken ?? metadata.FallbackBosToken;
        EosToken = metadata.Config.EosToken ?? metadata.FallbackEosToken;
        BosTokenId = BosToken is null ? null : lookup(BosToken);
        EosTokenId = EosToken is null ? null : lookup(EosToken);
        PadTokenId = metadata.Config.PadToken is null ? null : lookup(metadata.Config.PadToken);
        AddBosToken = (metadata.Config.AddBosToken ?? metadata.DefaultAddBos) && BosTokenId is not null;
        AddEosToken = (metadata.Config.AddEosToken ?? false) && EosTokenId is not null;
    }

    /// <inheritdoc />
    public TokenizerKind Kind { get; }

    /// <inheritdoc />
    public string Source { get; }

    /// <inheritdoc />
    public int VocabularySize { get; }

    /// <inheritdoc />
    public int? BosTokenId { get; }

    /// <inheritdoc />
    public int? EosTokenId { get; }

    /// <inheritdoc />
    public int? PadTokenId { get; }

    /// <inheritdoc />
    public string? BosToken { get; }

    /// <inheritdoc />
    public string? EosToken { get; }

    /// <inheritdoc />
    public bool AddBosToken { get; }

    /// <inheritdoc />
    public bool AddEosToken { get; }

    /// <inheritdoc />
    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <inheritdoc />
    public TokenizerConfig Config { get; }

    /// <inheritdoc />
    public string? ChatTemplate => Config.ChatTemplate;

    /// <inheritdoc />
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        IReadOnlyList<int> body = text.Length == 0 ? Array.Empty<int>() : _encodeWithoutBosEos(text);
        bool addBos = addSpecialTokens && AddBosToken;
        bool addEos = addSpecialTokens && AddEosToken;
        if (!addBos && !addEos)
        {
            return body;
        }

        var ids = new List<int>(body.Count + 2);
        if (addBos)
        {
            ids.Add(BosTokenId!.Value);
        }

        ids.AddRange(body);
        if (addEos)
        {
            ids.Add(EosTokenId!.Value);
        }

        return ids;
    }

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        ArgumentNullException.ThrowIfNull(ids);
        IEnumerable<int> kept = skipSpecialTokens ? ids.Where(id => !_specialIds.Contains(id)) : ids;
        return _inner switch
        {
            // SentencePiece leaves special tokens out unless asked; we filter them ourselves above.
            SentencePieceTokenizer sentencePiece => sentencePiece.Decode(kept, considerSpecialTokens: true),
            _ => _inner.Decode(kept),
        };
    }

    /// <inheritdoc />
    public int? TokenToId(string token)
    {
        ArgumentNullException.ThrowIfNull(token);
        return SpecialTokens.TryGetValue(token, out int id) ? id : _lookup(token);
    }
}
