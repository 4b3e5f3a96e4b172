using FineTuning.Core.Data;
using FineTuning.Core.Tokenization;
using Xunit;

namespace FineTuning.Core.Tests.Data;

public sealed class ChatTemplateDetectionTests
{
    // Excerpts of real templates as they read after JSON decoding (Jinja string escapes such as \n stay literal).
    private const string Qwen25 = """
        {%- if tools %}{{- '<|im_start|>system\n' }}{%- else %}
            {%- if messages[0]['role'] == 'system' %}
                {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
            {%- else %}
                {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
            {%- endif %}
        {%- endif %}
        {%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}
        """;

    private const string SmolLm2 =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}";

    private const string PlainChatMl =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    private const string Llama3 =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}";

    private const string Llama2 =
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% endif %}{% endfor %}";

    private const string Mistral =
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% endif %}{% endfor %}";

    private const string Zephyr =
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% endfor %}";

    [Theory]
    [InlineData(Qwen25, "chatml")]
    [InlineData(SmolLm2, "chatml")]
    [InlineData(PlainChatMl, "chatml")]
    [InlineData(Llama3, "llama3")]
    [InlineData(Llama2, "llama2")]
    [InlineData(Mistral, "mistral")]
    [InlineData(Zephyr, "zephyr")]
    public void DetectsFamilyFromChatTemplate(string jinja, string expected)
    {
        TokenizerConfig config = new() { ChatTemplate = jinja };

        Assert.Equal(expected, ChatTemplates.Detect(config)?.Name);
    }

    [Fact]
    public void DetectsChatMlDefaultSystemMessages()
    {
        ChatMessage[] messages = [ChatMessage.User("Hi!")];

        Assert.StartsWith(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
            ChatTemplates.Detect(Qwen25)!.RenderText(messages));
        Assert.StartsWith(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
            ChatTemplates.Detect(SmolLm2)!.RenderText(messages));
        Assert.Equal("<|im_start|>user\nHi!<|im_end|>\n", ChatTemplates.Detect(PlainChatMl)!.RenderText(messages));
    }

    [Fact]
    public void DetectsFromParsedTokenizerConfig()
    {
        string json = "{ \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"chat_template\": " + System.Text.Json.JsonSerializer.Serialize(Zephyr) + " }";

        IChatTemplate? template = ChatTemplates.Detect(TokenizerConfig.Parse(json));

        Assert.Equal("zephyr", template?.Name);
    }

    [Fact]
    public void UnknownOrMissingTemplateGivesNull()
    {
        Assert.Null(ChatTemplates.Detect(TokenizerConfig.Default));
        Assert.Null(ChatTemplates.Detect(new TokenizerConfig { ChatTemplate = "{% for m in messages %}{{ m.content }}{% endfor %}" }));
    }
}
