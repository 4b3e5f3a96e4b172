using FineTuning.Core.Data;
using Xunit;

namespace FineTuning.Core.Tests.Data;

public sealed class ChatTemplateTests
{
    private static readonly ChatMessage[] Conversation =
    [
        ChatMessage.System("You are helpful."),
        ChatMessage.User("Hi!"),
        ChatMessage.Assistant("Hello! How can I help?"),
    ];

    private static readonly ChatMessage[] Prompt = [ChatMessage.System("You are helpful."), ChatMessage.User("Hi!")];

    [Theory]
    [InlineData("chatml",
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n")]
    [InlineData("llama3",
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>")]
    [InlineData("llama2",
        "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST] Hello! How can I help? </s>")]
    [InlineData("mistral",
        "<s>[INST] You are helpful.\n\nHi! [/INST]Hello! How can I help?</s>")]
    [InlineData("zephyr",
        "<|system|>\nYou are helpful.</s>\n<|user|>\nHi!</s>\n<|assistant|>\nHello! How can I help?</s>\n")]
    [InlineData("plain", "You are helpful.Hi!Hello! How can I help?")]
    public void RendersSystemUserAssistantLikeHuggingFace(string name, string expected)
    {
        IChatTemplate template = ChatTemplates.Get(name);

        Assert.Equal(name, template.Name);
        Assert.Equal(expected, template.RenderText(Conversation));
        Assert.Equal(expected, string.Concat(template.Render(Conversation).Select(s => s.Text)));
    }

    [Theory]
    [InlineData("chatml", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n")]
    [InlineData("llama3", "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")]
    [InlineData("zephyr", "<|system|>\nYou are helpful.</s>\n<|user|>\nHi!</s>\n<|assistant|>\n")]
    [InlineData("llama2", "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi! [/INST]")]
    [InlineData("mistral", "<s>[INST] You are helpful.\n\nHi! [/INST]")]
    public void AddsGenerationPrompt(string name, string expected)
    {
        Assert.Equal(expected, ChatTemplates.Get(name).RenderText(Prompt, addGenerationPrompt: true));
    }

    [Fact]
    public void MultiTurnLlama2AndMistralRepeatMarkers()
    {
        ChatMessage[] turns = [ChatMessage.User(" Hi! "), ChatMessage.Assistant("Hello."), ChatMessage.User("Thanks")];

        Assert.Equal("<s>[INST] Hi! [/INST] Hello. </s><s>[INST] Thanks [/INST]", ChatTemplates.Get("llama2").RenderText(turns));
        Assert.Equal("<s>[INST]  Hi!  [/INST]Hello.</s>[INST] Thanks [/INST]", ChatTemplates.Get("mistral").RenderText(turns));
    }

    [Fact]
    public void Llama2AndMistralRequireAlternatingRoles()
    {
        ChatMessage[] twoUsers = [ChatMessage.User("a"), ChatMessage.User("b")];

        var error = Assert.Throws<ArgumentException>(() => ChatTemplates.Get("llama2").Render(twoUsers));
        Assert.Contains("alternating", error.Message);
        Assert.Throws<ArgumentException>(() => ChatTemplates.Get("mistral").Render([ChatMessage.Assistant("a")]));
    }

    [Fact]
    public void ChatMlWritesQwenDefaultSystemMessageWhenNoneGiven()
    {
        var options = new ChatTemplateOptions { DefaultSystemMessage = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." };

        string text = ChatTemplates.Get("chatml", options).RenderText([ChatMessage.User("Hi!")], addGenerationPrompt: true);

        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
            text);
        Assert.Equal(
            "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n",
            ChatTemplates.Get("chatml", options).RenderText(Prompt));
    }

    [Fact]
    public void Llama3TrimsContent()
    {
        string text = ChatTemplates.Get("llama3").RenderText([ChatMessage.User("  Hi!\n")]);

        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>", text);
    }

    [Theory]
    [InlineData("chatml", "Hello! How can I help?<|im_end|>")]
    [InlineData("llama3", "Hello! How can I help?<|eot_id|>")]
    [InlineData("llama2", "Hello! How can I help? </s>")]
    [InlineData("mistral", "Hello! How can I help?</s>")]
    [InlineData("zephyr", "Hello! How can I help?</s>")]
    [InlineData("plain", "Hello! How can I help?")]
    public void OnlyAssistantContentAndEndMarkerAreTrainable(string name, string trainable)
    {
        IReadOnlyList<ChatSegment> segments = ChatTemplates.Get(name).Render(Conversation);

        Assert.Equal([trainable], segments.Where(s => s.IsTrainable).Select(s => s.Text));
        Assert.All(segments.Where(s => !s.IsTrainable), s => Assert.DoesNotContain("Hello! How", s.Text));
    }

    [Fact]
    public void UnknownNameListsKnownTemplates()
    {
        var error = Assert.Throws<ArgumentException>(() => ChatTemplates.Get("vicuna"));

        Assert.Contains("vicuna", error.Message);
        foreach (string name in ChatTemplates.Names)
        {
            Assert.Contains(name, error.Message);
        }
    }

    [Fact]
    public void MessagesValidateRoles()
    {
        var error = Assert.Throws<ArgumentException>(() => new ChatMessage("tool", "x"));

        Assert.Contains("tool", error.Message);
        Assert.Contains("assistant", error.Message);
    }
}
