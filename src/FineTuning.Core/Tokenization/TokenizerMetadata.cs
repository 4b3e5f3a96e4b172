namespace FineTuning.Core.Tokenization;

/// <summary>The settings a <see cref="WrappedTokenizer"/> needs besides the Microsoft.ML.Tokenizers instance.</summary>
/// <param name="Kind">Which file kind the tokenizer came from.</param>
/// <param name="Source">Where it came from, for messages.</param>
/// <param name="Config">The tokenizer_config.json settings.</param>
/// <param name="VocabularySize">Highest id + 1.</param>
/// <param name="SpecialTokens">Special tokens recognised in text and skipped on request when decoding.</param>
/// <param name="FallbackBosToken">The BOS text to use when the config names none.</param>
/// <param name="FallbackEosToken">The EOS text to use when the config names none.</param>
/// <param name="DefaultAddBos">Whether BOS is added when the config's add_bos_token is absent.</param>
internal sealed record TokenizerMetadata(
    TokenizerKind Kind,
    string Source,
    TokenizerConfig Config,
    int VocabularySize,
    IReadOnlyDictionary<string, int> SpecialTokens,
    string? FallbackBosToken,
    string? FallbackEosToken,
    bool DefaultAddBos);
