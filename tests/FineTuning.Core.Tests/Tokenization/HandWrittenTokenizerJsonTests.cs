using Xunit;
using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Tests.Tokenization;

public sealed class HandWrittenTokenizerJsonTests
{
    // Vocabulary: h0 e1 l2 o3 Ġ4 w5 r6 d7 he8 ll9 hell10 hello11 Ġw12 or13 Ġwor14; added special <|end|> = 15.
    private const string Vocab =
        "{\"h\":0,\"e\":1,\"l\":2,\"o\":3,\"Ġ\":4,\"w\":5,\"r\":6,\"d\":7,\"he\":8,\"ll\":9,\"hell\":10,\"hello\":11,\"Ġw\":12,\"or\":13,\"Ġwor\":14}";

    private const string StringMerges = "[\"h e\", \"l l\", \"he ll\", \"hell o\", \"Ġ w\", \"o r\", \"Ġw or\"]";

    private const string ArrayMerges = "[[\"h\",\"e\"], [\"l\",\"l\"], [\"he\",\"ll\"], [\"hell\",\"o\"], [\"Ġ\",\"w\"], [\"o\",\"r\"], [\"Ġw\",\"or\"]]";

    internal static string TokenizerJson(string merges, string modelType = "BPE") => $$"""
        {
          "version": "1.0",
          "added_tokens": [ { "id": 15, "content": "<|end|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true } ],
          "normalizer": null,
          "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
              { "type": "Split", "pattern": { "Regex": " ?\\p{L}++|\\s+" }, "behavior": "Isolated", "invert": false },
              { "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false }
            ]
          },
          "post_processor": null,
          "decoder": { "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true },
          "model": { "type": "{{modelType}}", "dropout": null, "unk_token": null, "vocab": {{Vocab}}, "merges": {{merges}} }
        }
        """;

    // "hello": h e l l o -> (h e) he l l o -> (l l) he ll o -> (he ll) hell o -> (hell o) hello = 11.
    // " world": Ġ w o r l d -> (Ġ w) Ġw o r l d -> (o r) Ġw or l d -> (Ġw or) Ġwor l d = 14 2 7.
    private static readonly int[] Expected = [11, 14, 2, 7, 15];

    [Theory]
    [InlineData(StringMerges)]
    [InlineData(ArrayMerges)]
    public void EncodesToHandComputedIds(string merges)
    {
        using var folder = new TempDirectory();
        File.WriteAllText(folder.File("tokenizer.json"), TokenizerJson(merges));

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.Equal(TokenizerKind.HuggingFaceByteLevelBpe, tokenizer.Kind);
        Assert.Equal(Expected, tokenizer.Encode("hello world<|end|>"));
        Assert.Equal("hello world<|end|>", tokenizer.Decode(Expected));
        Assert.Equal("hello world", tokenizer.Decode(Expected, skipSpecialTokens: true));
        Assert.Equal(16, tokenizer.VocabularySize);
        Assert.Equal(15, tokenizer.TokenToId("<|end|>"));
        Assert.Equal(14, tokenizer.TokenToId("Ġwor"));
        Assert.False(tokenizer.AddBosToken);
    }

    [Fact]
    public void PostProcessorBosAndConfigAreHonoured()
    {
        using var folder = new TempDirectory();
        string json = TokenizerJson(StringMerges).Replace(
            "\"post_processor\": null",
            "\"post_processor\": { \"type\": \"TemplateProcessing\", \"single\": [ { \"SpecialToken\": { \"id\": \"<|end|>\", \"type_id\": 0 } }, { \"Sequence\": { \"id\": \"A\", \"type_id\": 0 } } ] }");
        File.WriteAllText(folder.File("tokenizer.json"), json);

        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);

        Assert.True(tokenizer.AddBosToken);
        Assert.Equal(15, tokenizer.BosTokenId);
        Assert.Equal([15, 11], tokenizer.Encode("hello"));
        Assert.Equal([11], tokenizer.Encode("hello", addSpecialTokens: false));

        File.WriteAllText(folder.File("tokenizer_config.json"), "{ \"add_bos_token\": false, \"eos_token\": \"<|end|>\", \"pad_token\": \"<|end|>\" }");
        ITextTokenizer configured = TokenizerLoader.Load(folder.Path);
        Assert.False(configured.AddBosToken);
        Assert.Equal(15, configured.EosTokenId);
        Assert.Equal(15, configured.PadTokenId);
        Assert.Equal([11], configured.Encode("hello"));
    }

    [Fact]
    public void NonBpeModelIsRejectedNamingFileAndField()
    {
        using var folder = new TempDirectory();
        string path = folder.File("tokenizer.json");
        File.WriteAllText(path, TokenizerJson(StringMerges, modelType: "Unigram"));

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(folder.Path));

        Assert.Equal(path, error.FilePath);
        Assert.Contains(path, error.Message);
        Assert.Contains("model.type", error.Message);
        Assert.Contains("Unigram", error.Message);
    }

    [Fact]
    public void MalformedJsonIsRejectedNamingFile()
    {
        using var folder = new TempDirectory();
        string path = folder.File("tokenizer.json");
        File.WriteAllText(path, "{ \"model\": { \"type\": \"BPE\", ");

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(folder.Path));

        Assert.Equal(path, error.FilePath);
        Assert.Contains(path, error.Message);
        Assert.Contains("JSON", error.Message);
    }

    [Fact]
    public void NonByteLevelPreTokenizerIsRejected()
    {
        using var folder = new TempDirectory();
        string json = TokenizerJson(StringMerges)
            .Replace("\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": false", "\"type\": \"Metaspace\"");
        File.WriteAllText(folder.File("tokenizer.json"), json);

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(folder.Path));

        Assert.Contains("pre_tokenizer", error.Message);
    }

    [Theory]
    [InlineData(@"\p{L}++|\s*+", @"\p{L}+|\s*")]
    [InlineData(@"[^\s\p{L}]?+\p{N}{1,3}+", @"[^\s\p{L}]?\p{N}{1,3}")]
    [InlineData(@"(?i:'s)|\++|[+]+", @"(?i:'s)|\++|[+]+")]
    public void PossessiveQuantifiersBecomeGreedy(string pattern, string expected)
    {
        Assert.Equal(expected, HuggingFaceBpeLoader.RemovePossessiveQuantifiers(pattern));
    }
}
