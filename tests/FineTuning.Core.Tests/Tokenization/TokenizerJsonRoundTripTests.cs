using Xunit;
using System.Text.Json;
using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Tests.Tokenization;

public sealed class TokenizerJsonRoundTripTests
{
    [Fact]
    public void WrittenGpt2TokenizerJsonEncodesLikeTiktokenGpt2()
    {
        using var folder = new TempDirectory();
        TokenizerFiles.WriteGpt2(folder.Path);
        ITextTokenizer reference = TokenizerLoader.Gpt2();

        ITextTokenizer loaded = TokenizerLoader.Load(folder.Path);

        Assert.Equal(TokenizerKind.HuggingFaceByteLevelBpe, loaded.Kind);
        string corpus = SampleText.Corpus();
        Assert.True(corpus.Split(' ', '\n').Length > 300);
        Assert.Equal(reference.Encode(corpus), loaded.Encode(corpus));
        foreach (string text in SampleText.Varied)
        {
            IReadOnlyList<int> ids = loaded.Encode(text);
            Assert.Equal(reference.Encode(text), ids);
            Assert.Equal(text, loaded.Decode(ids));
        }
    }

    [Fact]
    public void WrittenGpt2FilesCarryConfigAndSpecialTokens()
    {
        using var folder = new TempDirectory();
        TokenizerFiles.WriteGpt2(folder.Path);

        ITextTokenizer loaded = TokenizerLoader.Load(folder.Path);

        Assert.False(loaded.AddBosToken);
        Assert.Equal(50256, loaded.BosTokenId);
        Assert.Equal(50256, loaded.EosTokenId);
        Assert.Equal(50257, loaded.VocabularySize);
        Assert.Equal("GPT2Tokenizer", loaded.Config.TokenizerClass);
        Assert.Equal(50256, loaded.SpecialTokens["<|endoftext|>"]);
        Assert.Equal("Hello world", loaded.Decode(loaded.Encode("Hello world<|endoftext|>"), skipSpecialTokens: true));
        Assert.True(File.Exists(folder.File(TokenizerFiles.SpecialTokensMapFileName)));
        Assert.Empty(Directory.GetFiles(folder.Path, "*.tmp"));

        using JsonDocument json = JsonDocument.Parse(File.ReadAllText(folder.File("tokenizer.json")));
        JsonElement merges = json.RootElement.GetProperty("model").GetProperty("merges");
        Assert.Equal(50000, merges.GetArrayLength());
        Assert.Equal("Ġ t", merges[0].GetString());
    }

    [Fact]
    public void WritingTwiceReplacesTheFiles()
    {
        using var folder = new TempDirectory();
        File.WriteAllText(folder.File("tokenizer_config.json"), "{ \"add_bos_token\": true }");

        TokenizerFiles.WriteGpt2(folder.Path);
        TokenizerFiles.WriteGpt2(folder.Path);

        Assert.False(TokenizerConfig.Load(folder.File("tokenizer_config.json")).AddBosToken);
        Assert.Equal(3, Directory.GetFiles(folder.Path).Length);
    }
}
