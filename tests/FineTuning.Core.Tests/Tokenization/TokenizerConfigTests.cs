using Xunit;
using FineTuning.Core.Tokenization;

namespace FineTuning.Core.Tests.Tokenization;

public sealed class TokenizerConfigTests
{
    [Fact]
    public void ReadsStringAndObjectTokens()
    {
        const string json = """
            {
              "add_bos_token": true,
              "add_eos_token": false,
              "bos_token": { "__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false },
              "eos_token": "</s>",
              "pad_token": null,
              "unk_token": { "content": "<unk>" },
              "chat_template": "{% for message in messages %}{{ message['content'] }}{% endfor %}",
              "model_max_length": 2048,
              "tokenizer_class": "LlamaTokenizer",
              "added_tokens_decoder": { "0": { "content": "<unk>", "special": true }, "32000": { "content": "<pad>", "special": false } }
            }
            """;

        TokenizerConfig config = TokenizerConfig.Parse(json);

        Assert.True(config.AddBosToken);
        Assert.False(config.AddEosToken);
        Assert.Equal("<s>", config.BosToken);
        Assert.Equal("</s>", config.EosToken);
        Assert.Null(config.PadToken);
        Assert.Equal("<unk>", config.UnknownToken);
        Assert.StartsWith("{% for message", config.ChatTemplate);
        Assert.Equal(2048, config.ModelMaxLength);
        Assert.Equal("LlamaTokenizer", config.TokenizerClass);
        Assert.Equal(32000, config.AddedTokens["<pad>"]);
        Assert.Equal(["<unk>"], config.SpecialAddedTokens);
    }

    [Fact]
    public void ReadsNamedChatTemplatesAndUnlimitedLength()
    {
        const string json = """
            { "chat_template": [ { "name": "default", "template": "A" }, { "name": "tool_use", "template": "B" } ],
              "model_max_length": 1000000000000000019884624838656 }
            """;

        TokenizerConfig config = TokenizerConfig.Parse(json);

        Assert.Equal("A", config.ChatTemplate);
        Assert.Equal("B", config.ChatTemplates["tool_use"]);
        Assert.Null(config.ModelMaxLength);
        Assert.Null(config.AddBosToken);
    }

    [Fact]
    public void MissingFileGivesDefaults()
    {
        TokenizerConfig config = TokenizerConfig.Load(Path.Combine(Path.GetTempPath(), Guid.NewGuid().ToString("N"), "tokenizer_config.json"));

        Assert.Same(TokenizerConfig.Default, config);
        Assert.Null(config.BosToken);
        Assert.Null(config.ChatTemplate);
    }

    [Fact]
    public void MalformedJsonNamesTheFile()
    {
        using var folder = new TempDirectory();
        string path = folder.File("tokenizer_config.json");
        File.WriteAllText(path, "{ \"add_bos_token\": tru }");

        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerConfig.Load(path));

        Assert.Equal(path, error.FilePath);
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void WrongFieldTypeIsReported()
    {
        var error = Assert.Throws<TokenizerFormatException>(() => TokenizerConfig.Parse("{ \"add_bos_token\": \"yes\" }", "cfg.json"));

        Assert.Contains("add_bos_token", error.Message);
        Assert.Contains("cfg.json", error.Message);
    }
}
