using System.Text.Json;
using FineTuning.Core.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Tokenization;

/// <summary>tokenizer.json pre-tokenizer and normalizer variants used by Llama 3, Qwen2 and SmolLM2.</summary>
public sealed class PreTokenizerVariantTests
{
    // Llama 3's Split pattern: digits are split in groups of at most three.
    private const string Llama3Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static string Write(TempDirectory folder, object preTokenizer, object? normalizer, Dictionary<string, int> vocab, string[][] merges)
    {
        var json = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["added_tokens"] = Array.Empty<object>(),
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = preTokenizer,
            ["decoder"] = new { type = "ByteLevel" },
            ["model"] = new { type = "BPE", vocab, merges },
        };
        File.WriteAllText(folder.File("tokenizer.json"), JsonSerializer.Serialize(json));
        return folder.Path;
    }

    [Fact]
    public void Llama3SplitPatternGroupsDigitsByThreeAndQwenNfcComposes()
    {
        using var folder = new TempDirectory();
        // "Ã©" is the byte-level form of U+00E9 (é, bytes C3 A9); "e" + U+0301 only becomes it after NFC.
        var vocab = new Dictionary<string, int>
        {
            ["1"] = 0, ["2"] = 1, ["3"] = 2, ["4"] = 3, ["5"] = 4, ["12"] = 5, ["34"] = 6, ["123"] = 7, ["45"] = 8,
            ["Ã"] = 9, ["©"] = 10, ["Ã©"] = 11, ["e"] = 12, ["Ì"] = 13, ["ģ"] = 14,
        };
        string[][] merges = [["1", "2"], ["3", "4"], ["12", "3"], ["4", "5"], ["Ã", "©"]];
        object preTokenizer = new
        {
            type = "Sequence",
            pretokenizers = new object[]
            {
                new { type = "Split", pattern = new { Regex = Llama3Pattern }, behavior = "Isolated", invert = false },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false },
            },
        };

        ITextTokenizer tokenizer = TokenizerLoader.Load(Write(folder, preTokenizer, new { type = "NFC" }, vocab, merges));

        // Split "123" + "45": [123] [45]. As one piece BPE would give 12 34 5 instead.
        Assert.Equal([7, 8], tokenizer.Encode("12345"));
        Assert.Equal([11], tokenizer.Encode("e\u0301"));
        Assert.Equal("\u00e9", tokenizer.Decode([11]));
    }

    [Fact]
    public void WithoutSplitTheWholeNumberIsOnePiece()
    {
        using var folder = new TempDirectory();
        var vocab = new Dictionary<string, int> { ["1"] = 0, ["2"] = 1, ["3"] = 2, ["4"] = 3, ["5"] = 4, ["12"] = 5, ["34"] = 6, ["123"] = 7, ["45"] = 8 };
        string[][] merges = [["1", "2"], ["3", "4"], ["12", "3"], ["4", "5"]];

        ITextTokenizer tokenizer = TokenizerLoader.Load(Write(folder, new { type = "ByteLevel", add_prefix_space = false, use_regex = true }, null, vocab, merges));

        Assert.Equal([5, 6, 4], tokenizer.Encode("12345"));
    }

    [Fact]
    public void DigitsThenByteLevelSplitsDigitsLikeSmolLm2()
    {
        using var folder = new TempDirectory();
        var vocab = new Dictionary<string, int> { ["a"] = 0, ["Ġ"] = 1, ["ĠĠ"] = 2, ["1"] = 3, ["2"] = 4, ["12"] = 5, ["Ġa"] = 6 };
        string[][] merges = [["Ġ", "Ġ"], ["1", "2"], ["Ġ", "a"]];
        object preTokenizer = new
        {
            type = "Sequence",
            pretokenizers = new object[]
            {
                new { type = "Digits", individual_digits = true },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
            },
        };

        ITextTokenizer tokenizer = TokenizerLoader.Load(Write(folder, preTokenizer, null, vocab, merges));

        // Pieces: "a", "  " (whitespace before a digit ends the piece), "1", "2", " a".
        Assert.Equal([0, 2, 3, 4, 6], tokenizer.Encode("a  12 a"));
    }

    [Fact]
    public void UnsupportedNormalizerIsReported()
    {
        using var folder = new TempDirectory();
        string path = Write(folder, new { type = "ByteLevel" }, new { type = "Lowercase" }, new Dictionary<string, int> { ["a"] = 0 }, []);

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerLoader.Load(path));

        Assert.Contains("normalizer", error.Message);
        Assert.Contains("Lowercase", error.Message);
    }
}
