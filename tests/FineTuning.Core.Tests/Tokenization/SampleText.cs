namespace FineTuning.Core.Tests.Tokenization;

internal static class SampleText
{
    /// <summary>Short strings that exercise the pre-tokenizer's corner cases.</summary>
    public static readonly string[] Varied =
    [
        "Hello world",
        "  leading spaces and trailing   ",
        "multiple     spaces\n\n\nnewlines\r\n\ttabs\t\tand more",
        "digits 0 12 345 6789 3.14159 1,000,000 2026-11-29",
        "héllo wörld — “quotes” ‘single’ naïve café Ünïcödé",
        "日本語のテキスト 中文文本 한국어 텍스트 русский текст العربية",
        "emoji 🎉🚀👩‍👩‍👧 ✓ ☃ 🇫🇷",
        "contractions: I'll we've they're don't it's she'd I'm",
        "code: for (int i = 0; i < n; i++) { sum += a[i]; } // done",
        "mixed<|endoftext|>special tokens<|endoftext|>",
        "",
        " ",
        "\u00a0non-breaking\u2009thin\u200bzero width",
    ];

    /// <summary>A few hundred words of mixed prose, code, numbers and non-Latin scripts.</summary>
    public static string Corpus()
    {
        const string prose =
            "The quick brown fox jumps over the lazy dog. Fine-tuning a language model means continuing its training " +
            "on a smaller, task-specific data set, usually with a lower learning rate. Low-rank adaptation (LoRA) freezes " +
            "the original weights and learns two small matrices per layer instead; their product is added to the frozen " +
            "projection. In 2023, QLoRA showed that the frozen weights can even be stored in 4-bit NF4 format!\n\n" +
            "Tokenizers split text into pieces: \"un-believ-able\", 'quoted', (parenthesised) and [bracketed] words, " +
            "URLs such as https://example.com/path?query=1&x=2, e-mail addresses like someone@example.org, and numbers " +
            "like 42, 3.5e-7, -17, 1_000_000 or 0xDEADBEEF.\n" +
            "    Indented code:\n" +
            "    def add(a, b):\n" +
            "        return a + b  # sum\n\n" +
            "Les élèves français écrivent « bonjour » et « ça va ? » ; die Straße ist schön; el niño comió piña.\n" +
            "Ελληνικά γράμματα, кириллица, עברית, हिन्दी, ภาษาไทย, 日本語, 简体中文, 한국어.\n" +
            "Emoji: 😀😃😄 👍🏽 🏳️‍🌈 ❤️ — and symbols: ∑ ∫ √ ≈ ≠ ≤ ≥ ← → ™ © ®.\n" +
            "Whitespace:\t\ttabs,   runs   of   spaces,\r\nWindows line endings, trailing spaces   \n" +
            "She said: \"I'll be there at 10:30, won't you?\" He'd said he's coming; they're late; we've waited.\n";
        var builder = new System.Text.StringBuilder();
        for (int i = 0; i < 3; i++)
        {
            builder.Append(prose);
            builder.Append("Paragraph ").Append(i + 1).Append(" ends here.<|endoftext|>\n");
        }

        return builder.ToString();
    }
}
