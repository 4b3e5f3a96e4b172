using Microsoft.ML.Tokenizers;

namespace FineTuning.Core.Tokenization;

/// <summary>Creates an <see cref="ITextTokenizer"/> for a model folder or the embedded GPT-2 default.</summary>
public static class TokenizerLoader
{
    /// <summary>The Hugging Face tokenizer file name for byte-level BPE and other fast tokenizers.</summary>
    public const string TokenizerJsonFileName = "tokenizer.json";

    /// <summary>The SentencePiece model file name.</summary>
    public const string SentencePieceFileName = "tokenizer.model";

    /// <summary>The Hugging Face tokenizer settings file name.</summary>
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>
    /// Loads the tokenizer of a model folder. <c>tokenizer.json</c> (byte-level BPE) wins; otherwise
    /// <c>tokenizer.model</c> (SentencePiece BPE); a folder with neither gets the embedded GPT-2 tokenizer
    /// (<see cref="ITextTokenizer.Kind"/> is then <see cref="TokenizerKind.Gpt2Default"/>).
    /// A folder that ships both files with a non-byte-level <c>tokenizer.json</c> (TinyLlama, Mistral) uses <c>tokenizer.model</c>.
    /// <c>tokenizer_config.json</c>, when present, supplies BOS/EOS policy, special tokens and the chat template.
    /// </summary>
    /// <param name="modelDirectory">The model folder.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="TokenizerFormatException">A tokenizer file is malformed or unsupported.</exception>
    public static ITextTokenizer Load(string modelDirectory)
    {
        ArgumentNullException.ThrowIfNull(modelDirectory);
        if (!Directory.Exists(modelDirectory))
        {
            throw new DirectoryNotFoundException($"Model folder '{modelDirectory}' does not exist.");
        }

        TokenizerConfig config = TokenizerConfig.Load(Path.Combine(modelDirectory, TokenizerConfigFileName));
        string jsonPath = Path.Combine(modelDirectory, TokenizerJsonFileName);
        string modelPath = Path.Combine(modelDirectory, SentencePieceFileName);

        if (File.Exists(jsonPath) && (!File.Exists(modelPath) || HuggingFaceBpeLoader.IsByteLevel(jsonPath)))
        {
            return HuggingFaceBpeLoader.Load(jsonPath, config);
        }

        if (File.Exists(modelPath))
        {
            return SentencePieceLoader.Load(modelPath, config);
        }

        return CreateGpt2(config, $"embedded GPT-2 (no tokenizer files in '{modelDirectory}')");
    }

    /// <summary>Loads a byte-level BPE Hugging Face <c>tokenizer.json</c> file directly.</summary>
    /// <param name="tokenizerJsonPath">Path of the tokenizer.json file.</param>
    /// <param name="config">Settings from tokenizer_config.json; <see cref="TokenizerConfig.Default"/> when omitted.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="TokenizerFormatException">The file is malformed or not a byte-level BPE model.</exception>
    public static ITextTokenizer LoadTokenizerJson(string tokenizerJsonPath, TokenizerConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(tokenizerJsonPath);
        return HuggingFaceBpeLoader.Load(tokenizerJsonPath, config ?? TokenizerConfig.Default);
    }

    /// <summary>Loads a SentencePiece BPE <c>tokenizer.model</c> file directly.</summary>
    /// <param name="sentencePieceModelPath">Path of the tokenizer.model file.</param>
    /// <param name="config">Settings from tokenizer_config.json; add_bos_token defaults to true.</param>
    /// <returns>The tokenizer.</returns>
    /// <exception cref="TokenizerFormatException">The file is not a SentencePiece BPE model.</exception>
    public static ITextTokenizer LoadSentencePiece(string sentencePieceModelPath, TokenizerConfig? config = null)
    {
        ArgumentNullException.ThrowIfNull(sentencePieceModelPath);
        return SentencePieceLoader.Load(sentencePieceModelPath, config ?? TokenizerConfig.Default);
    }

    /// <summary>
    /// The embedded GPT-2 tokenizer (Microsoft.ML.Tokenizers tiktoken "gpt2" data): BOS = EOS = <c>&lt;|endoftext|&gt;</c>
    /// (id 50256) and no BOS added when encoding.
    /// </summary>
    /// <returns>The tokenizer.</returns>
    public static ITextTokenizer Gpt2() => CreateGpt2(TokenizerConfig.Default, "embedded GPT-2");

    private static ITextTokenizer CreateGpt2(TokenizerConfig config, string source)
    {
        TiktokenTokenizer tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        Gpt2Vocabulary vocabulary = Gpt2Vocabulary.Instance;
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (text, id) in tiktoken.SpecialTokens ?? new Dictionary<string, int>())
        {
            special[text] = id;
        }

        int maxId = Math.Max(vocabulary.TokensByRank.Count - 1, special.Count == 0 ? -1 : special.Values.Max());
        int? Lookup(string token) => special.TryGetValue(token, out int s) ? s : vocabulary.Ids.TryGetValue(token, out int v) ? v : null;
        var metadata = new TokenizerMetadata(
            TokenizerKind.Gpt2Default,
            source,
            config,
            maxId + 1,
            special,
            FallbackBosToken: Gpt2Vocabulary.EndOfText,
            FallbackEosToken: Gpt2Vocabulary.EndOfText,
            DefaultAddBos: false);
        return new WrappedTokenizer(tiktoken, text => tiktoken.EncodeToIds(text), Lookup, metadata);
    }
}
