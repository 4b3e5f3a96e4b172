using FineTuning.Core.Data;
using FineTuning.Core.Tests.Tokenization;
using FineTuning.Core.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Data;

public sealed class ExampleFormatterTests
{
    private static readonly ITextTokenizer Gpt2 = TokenizerLoader.Gpt2();

    [Fact]
    public void TextIsTrainableThroughoutWithEos()
    {
        var formatter = new ExampleFormatter(Gpt2, ChatTemplates.Get("plain"));

        TokenizedExample result = formatter.Format(new TextExample("Hello world"));

        Assert.Equal([15496, 995, 50256], result.InputIds);
        Assert.All(result.TrainableMask, Assert.True);
    }

    [Fact]
    public void PromptCompletionMasksThePrompt()
    {
        var formatter = new ExampleFormatter(Gpt2, ChatTemplates.Get("chatml"));
        var example = new PromptCompletionExample("Question: what is 2+2?\nAnswer:", " 4, of course.");
        IReadOnlyList<int> prompt = Gpt2.Encode(example.Prompt, addSpecialTokens: false);
        IReadOnlyList<int> completion = Gpt2.Encode(example.Completion, addSpecialTokens: false);

        TokenizedExample result = formatter.Format(example);

        Assert.Equal([.. prompt, .. completion, 50256], result.InputIds);
        Assert.Equal(
            [.. Enumerable.Repeat(false, prompt.Count), .. Enumerable.Repeat(true, completion.Count + 1)],
            result.TrainableMask);
        Assert.Equal(completion.Count + 1, result.TrainableCount);
    }

    [Fact]
    public void ChatMasksEverythingButAssistantReplies()
    {
        var formatter = new ExampleFormatter(Gpt2, ChatTemplates.Get("chatml"));
        var example = new ChatExample([ChatMessage.User("What is 2+2?"), ChatMessage.Assistant("4"), ChatMessage.User("Sure?"), ChatMessage.Assistant("Yes.")]);
        IReadOnlyList<int> head = Gpt2.Encode("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", false);
        IReadOnlyList<int> reply1 = Gpt2.Encode("4<|im_end|>", false);
        IReadOnlyList<int> middle = Gpt2.Encode("\n<|im_start|>user\nSure?<|im_end|>\n<|im_start|>assistant\n", false);
        IReadOnlyList<int> reply2 = Gpt2.Encode("Yes.<|im_end|>", false);
        IReadOnlyList<int> tail = Gpt2.Encode("\n", false);

        TokenizedExample result = formatter.Format(example);

        Assert.Equal([.. head, .. reply1, .. middle, .. reply2, .. tail], result.InputIds);
        Assert.Equal(
            [
                .. Enumerable.Repeat(false, head.Count), .. Enumerable.Repeat(true, reply1.Count),
                .. Enumerable.Repeat(false, middle.Count), .. Enumerable.Repeat(true, reply2.Count),
                .. Enumerable.Repeat(false, tail.Count),
            ],
            result.TrainableMask);
        Assert.Equal(reply1.Count + reply2.Count, result.TrainableCount);
        Assert.Equal(formatter.Template.RenderText(example.Messages), Gpt2.Decode(result.InputIds));
    }

    [Fact]
    public void TemplateThatWritesBosGetsNoSecondBos()
    {
        using var folder = new TempDirectory();
        File.WriteAllBytes(folder.File("tokenizer.model"), SentencePieceModelBuilder.Build(SentencePieceTokenizerTests.Pieces));
        ITextTokenizer tokenizer = TokenizerLoader.Load(folder.Path);
        var chat = new ChatExample([ChatMessage.User("hello"), ChatMessage.Assistant("world")]);
        Assert.True(tokenizer.AddBosToken);

        TokenizedExample mistral = new ExampleFormatter(tokenizer, ChatTemplates.Get("mistral")).Format(chat);
        TokenizedExample zephyr = new ExampleFormatter(tokenizer, ChatTemplates.Get("zephyr")).Format(chat);

        Assert.Equal(1, mistral.InputIds[0]);
        Assert.Equal(1, mistral.InputIds.Count(id => id == tokenizer.BosTokenId));
        Assert.Equal(1, zephyr.InputIds[0]);
        Assert.False(zephyr.TrainableMask[0]);
        Assert.Equal(1, zephyr.InputIds.Count(id => id == tokenizer.BosTokenId));
        Assert.Equal(tokenizer.EosTokenId, mistral.InputIds[^1]);
        Assert.True(mistral.TrainableMask[^1]);
    }

    [Fact]
    public void TruncatesToMaxSequenceLength()
    {
        var formatter = new ExampleFormatter(Gpt2, ChatTemplates.Get("plain"), new ExampleFormatterOptions { MaxSequenceLength = 2 });

        TokenizedExample result = formatter.Format(new TextExample("Hello world again"));

        Assert.Equal([15496, 995], result.InputIds);
        Assert.Equal(2, result.TrainableMask.Count);
    }
}
