using FineTuning.Core.IO;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace FineTuning.Core.Tokenization;

/// <summary>Writes Hugging Face tokenizer files for a new model folder.</summary>
public static class TokenizerFiles
{
    /// <summary>The Hugging Face special-tokens file name.</summary>
    public const string SpecialTokensMapFileName = "special_tokens_map.json";

    /// <summary>The tokenizer and generation files a model folder may hold, copied by <see cref="CopyTokenizerFiles"/>.</summary>
    public static IReadOnlyList<string> TokenizerFileNames { get; } =
    [
        TokenizerLoader.TokenizerJsonFileName, TokenizerLoader.SentencePieceFileName, TokenizerLoader.TokenizerConfigFileName,
        SpecialTokensMapFileName, "generation_config.json",
    ];

    /// <summary>
    /// Copies the tokenizer files (<see cref="TokenizerFileNames"/>) that exist in one model folder into another, each
    /// atomically, so a merged or fully fine-tuned model folder is complete on its own.
    /// </summary>
    /// <param name="sourceDirectory">The base model folder.</param>
    /// <param name="targetDirectory">The new model folder; created when missing.</param>
    /// <returns>The names of the files copied.</returns>
    public static IReadOnlyList<string> CopyTokenizerFiles(string sourceDirectory, string targetDirectory)
    {
        ArgumentNullException.ThrowIfNull(sourceDirectory);
        ArgumentNullException.ThrowIfNull(targetDirectory);
        Directory.CreateDirectory(targetDirectory);
        var copied = new List<string>();
        foreach (var name in TokenizerFileNames)
        {
            var source = Path.Combine(sourceDirectory, name);
            if (!File.Exists(source) || Path.GetFullPath(source) == Path.GetFullPath(Path.Combine(targetDirectory, name)))
            {
                continue;
            }

            AtomicFile.Write(Path.Combine(targetDirectory, name), stream =>
            {
                using var input = File.OpenRead(source);
                input.CopyTo(stream);
            });
            copied.Add(name);
        }

        return copied;
    }

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>
    /// Writes the GPT-2 tokenizer as Hugging Face files: <c>tokenizer.json</c> (byte-level BPE with the vocabulary and
    /// merges derived from the embedded GPT-2 ranks), <c>tokenizer_config.json</c> (add_bos_token false, BOS/EOS
    /// <c>&lt;|endoftext|&gt;</c>, GPT2Tokenizer) and <c>special_tokens_map.json</c>. Each file is written atomically.
    /// </summary>
    /// <param name="directory">The folder to write into; created when missing. Existing files are replaced.</param>
    public static void WriteGpt2(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        Directory.CreateDirectory(directory);
        Gpt2Vocabulary vocabulary = Gpt2Vocabulary.Instance;
        IReadOnlyList<(string Left, string Right)> merges = vocabulary.DeriveMerges();
        string endOfText = Gpt2Vocabulary.EndOfText;
        int endOfTextId = vocabulary.EndOfTextId;

        AtomicFile.Write(Path.Combine(directory, TokenizerLoader.TokenizerJsonFileName), stream =>
        {
            using var writer = new Utf8JsonWriter(stream, WriterOptions);
            writer.WriteStartObject();
            writer.WriteString("version", "1.0");
            writer.WriteNull("truncation");
            writer.WriteNull("padding");
            writer.WriteStartArray("added_tokens");
            writer.WriteStartObject();
            writer.WriteNumber("id", endOfTextId);
            writer.WriteString("content", endOfText);
            writer.WriteBoolean("single_word", false);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("normalized", true);
            writer.WriteBoolean("special", true);
            writer.WriteEndObject();
            writer.WriteEndArray();
            writer.WriteNull("normalizer");
            WriteByteLevel(writer, "pre_tokenizer", addPrefixSpace: false, trimOffsets: true);
            WriteByteLevel(writer, "post_processor", addPrefixSpace: true, trimOffsets: false);
            WriteByteLevel(writer, "decoder", addPrefixSpace: true, trimOffsets: true);
            writer.WriteStartObject("model");
            writer.WriteString("type", "BPE");
            writer.WriteNull("dropout");
            writer.WriteNull("unk_token");
            writer.WriteString("continuing_subword_prefix", string.Empty);
            writer.WriteString("end_of_word_suffix", string.Empty);
            writer.WriteBoolean("fuse_unk", false);
            writer.WriteBoolean("byte_fallback", false);
            writer.WriteStartObject("vocab");
            for (int id = 0; id < vocabulary.TokensByRank.Count; id++)
            {
                writer.WriteNumber(vocabulary.TokensByRank[id], id);
            }

            writer.WriteNumber(endOfText, endOfTextId);
            writer.WriteEndObject();
            writer.WriteStartArray("merges");
            foreach (var (left, right) in merges)
            {
                writer.WriteStringValue(left + " " + right);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
            writer.WriteEndObject();
        });

        AtomicFile.Write(Path.Combine(directory, TokenizerLoader.TokenizerConfigFileName), stream =>
        {
            using var writer = new Utf8JsonWriter(stream, WriterOptions);
            writer.WriteStartObject();
            writer.WriteBoolean("add_bos_token", false);
            writer.WriteBoolean("add_eos_token", false);
            writer.WriteBoolean("add_prefix_space", false);
            writer.WriteStartObject("added_tokens_decoder");
            writer.WriteStartObject(endOfTextId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            writer.WriteString("content", endOfText);
            writer.WriteBoolean("lstrip", false);
            writer.WriteBoolean("normalized", true);
            writer.WriteBoolean("rstrip", false);
            writer.WriteBoolean("single_word", false);
            writer.WriteBoolean("special", true);
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteString("bos_token", endOfText);
            writer.WriteString("eos_token", endOfText);
            writer.WriteString("unk_token", endOfText);
            writer.WriteBoolean("clean_up_tokenization_spaces", false);
            writer.WriteNumber("model_max_length", 1024);
            writer.WriteString("tokenizer_class", "GPT2Tokenizer");
            writer.WriteEndObject();
        });

        AtomicFile.Write(Path.Combine(directory, SpecialTokensMapFileName), stream =>
        {
            using var writer = new Utf8JsonWriter(stream, WriterOptions);
            writer.WriteStartObject();
            writer.WriteString("bos_token", endOfText);
            writer.WriteString("eos_token", endOfText);
            writer.WriteString("unk_token", endOfText);
            writer.WriteEndObject();
        });
    }

    private static void WriteByteLevel(Utf8JsonWriter writer, string name, bool addPrefixSpace, bool trimOffsets)
    {
        writer.WriteStartObject(name);
        writer.WriteString("type", "ByteLevel");
        writer.WriteBoolean("add_prefix_space", addPrefixSpace);
        writer.WriteBoolean("trim_offsets", trimOffsets);
        writer.WriteBoolean("use_regex", true);
        writer.WriteEndObject();
    }
}
