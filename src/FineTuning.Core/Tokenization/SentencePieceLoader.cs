using Microsoft.ML.Tokenizers;

namespace FineTuning.Core.Tokenization;

/// <summary>Builds an <see cref="ITextTokenizer"/> from a SentencePiece BPE <c>tokenizer.model</c> via <see cref="LlamaTokenizer"/>.</summary>
internal static class SentencePieceLoader
{
    /// <summary>Loads the tokenizer.</summary>
    /// <param name="path">Path of tokenizer.model.</param>
    /// <param name="config">Settings from tokenizer_config.json; add_bos_token defaults to true as for Llama.</param>
    /// <exception cref="TokenizerFormatException">The file is not a SentencePiece BPE model the library can read.</exception>
    public static ITextTokenizer Load(string path, TokenizerConfig config)
    {
        byte[] bytes = File.ReadAllBytes(path);
        bool addBos = config.AddBosToken ?? true;
        bool addEos = config.AddEosToken ?? false;

        // First pass: learn the model's own control tokens, so that "<s>", "</s>" and "<unk>" written in text map to
        // their ids (LlamaTokenizer only recognises tokens passed as special tokens).
        LlamaTokenizer probe = Create(bytes, addBos, addEos, null, path);
        var special = new Dictionary<string, int>(StringComparer.Ordinal)
        {
            [probe.BeginningOfSentenceToken] = probe.BeginningOfSentenceId,
            [probe.EndOfSentenceToken] = probe.EndOfSentenceId,
            [probe.UnknownToken] = probe.UnknownId,
        };
        foreach (var (text, id) in config.AddedTokens)
        {
            special[text] = id;
        }

        LlamaTokenizer tokenizer = Create(bytes, addBos, addEos, special, path);
        IReadOnlyDictionary<string, int> vocabulary = tokenizer.Vocabulary;
        int maxId = Math.Max(vocabulary.Count == 0 ? -1 : vocabulary.Values.Max(), special.Values.Max());
        int? Lookup(string token) => special.TryGetValue(token, out int s) ? s : vocabulary.TryGetValue(token, out int v) ? v : null;

        var metadata = new TokenizerMetadata(
            TokenizerKind.SentencePiece,
            path,
            config,
            maxId + 1,
            special,
            FallbackBosToken: tokenizer.BeginningOfSentenceToken,
            FallbackEosToken: tokenizer.EndOfSentenceToken,
            DefaultAddBos: true);
        return new WrappedTokenizer(
            tokenizer,
            text => tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false),
            Lookup,
            metadata);
    }

    private static LlamaTokenizer Create(byte[] bytes, bool addBos, bool addEos, IReadOnlyDictionary<string, int>? special, string path)
    {
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            return LlamaTokenizer.Create(stream, addBos, addEos, special);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or FormatException or IOException
                                       || ex.GetType().FullName == "Google.Protobuf.InvalidProtocolBufferException")
        {
            throw new TokenizerFormatException(path, $"not a SentencePiece BPE model that LlamaTokenizer can read: {ex.Message}", ex);
        }
    }
}
