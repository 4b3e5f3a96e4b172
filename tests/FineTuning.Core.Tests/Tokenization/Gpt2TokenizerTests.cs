using Xunit;
using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Tests.Tokenization;

public sealed class Gpt2TokenizerTests
{
    [Fact]
    public void EncodesHelloWorldWithEndOfText()
    {
        ITextTokenizer tokenizer = TokenizerLoader.Gpt2();

        Assert.Equal([15496, 995, 50256], tokenizer.Encode("Hello world<|endoftext|>"));
    }

    [Fact]
    public void ReportsGpt2SpecialTokens()
    {
        ITextTokenizer tokenizer = TokenizerLoader.Gpt2();

        Assert.Equal(TokenizerKind.Gpt2Default, tokenizer.Kind);
        Assert.Equal(50256, tokenizer.BosTokenId);
        Assert.Equal(50256, tokenizer.EosTokenId);
        Assert.Null(tokenizer.PadTokenId);
        Assert.False(tokenizer.AddBosToken);
        Assert.Equal(50257, tokenizer.VocabularySize);
        Assert.Equal(50256, tokenizer.SpecialTokens["<|endoftext|>"]);
        Assert.Equal(995, tokenizer.TokenToId("Ġworld"));
        Assert.Null(tokenizer.TokenToId("definitely-not-a-token"));
        Assert.Null(tokenizer.ChatTemplate);
    }

    [Fact]
    public void RoundTripsVariedText()
    {
        ITextTokenizer tokenizer = TokenizerLoader.Gpt2();

        foreach (string text in SampleText.Varied.Append(SampleText.Corpus()))
        {
            Assert.Equal(text, tokenizer.Decode(tokenizer.Encode(text)));
        }
    }

    [Fact]
    public void DecodeCanSkipSpecialTokens()
    {
        ITextTokenizer tokenizer = TokenizerLoader.Gpt2();
        IReadOnlyList<int> ids = tokenizer.Encode("Hello world<|endoftext|>");

        Assert.Equal("Hello world", tokenizer.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void FolderWithoutTokenizerFilesFallsBackToGpt2()
    {
        using var folder = new TempDirectory();

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.Equal(TokenizerKind.Gpt2Default, tokenizer.Kind);
        Assert.Contains("GPT-2", tokenizer.Source);
        Assert.Equal([15496, 995, 50256], tokenizer.Encode("Hello world<|endoftext|>"));
    }

    [Fact]
    public void MissingFolderIsReported()
    {
        string missing = Path.Combine(Path.GetTempPath(), "ftcore-missing-" + Guid.NewGuid().ToString("N"));

        var error = Assert.Throws<DirectoryNotFoundException>(() => TokenizerLoader.Load(missing));
        Assert.Contains(missing, error.Message);
    }
}
