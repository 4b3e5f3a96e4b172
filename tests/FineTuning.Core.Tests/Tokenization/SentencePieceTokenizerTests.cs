using Xunit;
using FineTuning.Core.Tokenization;
using static FineTuning.Core.Tests.Tokenization.SentencePieceModelBuilder;

namespace FineTuning.Core.Tests.Tokenization;

public sealed class SentencePieceTokenizerTests
{
    // SentencePiece BPE merges the adjacent pair whose concatenation has the highest score.
    internal static readonly (string, float, int)[] Pieces =
    [
        ("<unk>", 0f, Unknown), ("<s>", 0f, Control), ("</s>", 0f, Control),
        ("ll", -1f, Normal), ("▁h", -2f, Normal), ("▁he", -3f, Normal), ("llo", -4f, Normal), ("▁hello", -5f, Normal),
        ("or", -6f, Normal), ("▁w", -7f, Normal), ("▁wor", -8f, Normal),
        ("▁", -100f, Normal), ("h", -101f, Normal), ("e", -102f, Normal), ("l", -103f, Normal), ("o", -104f, Normal),
        ("w", -105f, Normal), ("r", -106f, Normal), ("d", -107f, Normal),
    ];

    // "hello world" -> "▁hello▁world".
    // ▁ h e l l o: (ll) -> (▁h) -> (▁he) -> (llo) -> (▁hello) = 7.
    // ▁ w o r l d: (or) -> (▁w) -> (▁wor) -> ▁wor l d = 10 14 18.
    private static readonly int[] HelloWorld = [7, 10, 14, 18];

    [Fact]
    public void AddsBosByDefaultAndEncodesToHandComputedIds()
    {
        using var folder = new TempDirectory();
        File.WriteAllBytes(folder.File("tokenizer.model"), Build(Pieces));

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.Equal(TokenizerKind.SentencePiece, tokenizer.Kind);
        Assert.True(tokenizer.AddBosToken);
        Assert.Equal(1, tokenizer.BosTokenId);
        Assert.Equal(2, tokenizer.EosTokenId);
        Assert.Equal(19, tokenizer.VocabularySize);
        Assert.Equal([1, .. HelloWorld], tokenizer.Encode("hello world"));
        Assert.Equal(HelloWorld, tokenizer.Encode("hello world", addSpecialTokens: false));
        Assert.Equal("hello world", tokenizer.Decode(tokenizer.Encode("hello world"), skipSpecialTokens: true));
        Assert.Equal("hello world", tokenizer.Decode(HelloWorld));
        Assert.Equal(7, tokenizer.TokenToId("▁hello"));
    }

    [Fact]
    public void HonoursAddBosTokenFalse()
    {
        using var folder = new TempDirectory();
        File.WriteAllBytes(folder.File("tokenizer.model"), Build(Pieces));
        File.WriteAllText(folder.File("tokenizer_config.json"), "{ \"add_bos_token\": false, \"add_eos_token\": true, \"bos_token\": { \"content\": \"<s>\" } }");

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.False(tokenizer.AddBosToken);
        Assert.True(tokenizer.AddEosToken);
        Assert.Equal([.. HelloWorld, 2], tokenizer.Encode("hello world"));
    }

    [Fact]
    public void SpecialTokenTextMapsToItsId()
    {
        using var folder = new TempDirectory();
        File.WriteAllBytes(folder.File("tokenizer.model"), Build(Pieces));

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        IReadOnlyList<int> ids = tokenizer.Encode("hello</s>", addSpecialTokens: false);
        Assert.Equal(2, ids[^1]);
        Assert.Equal(7, ids[0]);
    }

    [Fact]
    public void NonBpeModelIsRejectedNamingFile()
    {
        using var folder = new TempDirectory();
        string path = folder.File("tokenizer.model");
        File.WriteAllBytes(path, Build(Pieces, modelType: 1));

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(folder.Path));

        Assert.Equal(path, error.FilePath);
    }

    [Fact]
    public void NonByteLevelTokenizerJsonNextToTokenizerModelUsesSentencePiece()
    {
        using var folder = new TempDirectory();
        File.WriteAllBytes(folder.File("tokenizer.model"), Build(Pieces));
        File.WriteAllText(folder.File("tokenizer.json"), """
            { "normalizer": { "type": "Sequence", "normalizers": [ { "type": "Prepend", "prepend": "▁" } ] },
              "pre_tokenizer": null, "decoder": { "type": "Sequence", "decoders": [ { "type": "ByteFallback" } ] },
              "model": { "type": "BPE", "vocab": {}, "merges": [] } }
            """);

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.Equal(TokenizerKind.SentencePiece, tokenizer.Kind);
    }
}
