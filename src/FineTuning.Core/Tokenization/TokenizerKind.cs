namespace FineTuning.Core.Tokenization;

/// <summary>Where a <see cref="ITextTokenizer"/> got its vocabulary from.</summary>
public enum TokenizerKind
{
    /// <summary>The GPT-2 byte-level BPE vocabulary embedded in the library (used when a model folder has no tokenizer files).</summary>
    Gpt2Default,

    /// <summary>A Hugging Face <c>tokenizer.json</c> holding a byte-level BPE model (Llama 3, Qwen2, SmolLM2, GPT-2).</summary>
    HuggingFaceByteLevelBpe,

    /// <summary>A SentencePiece BPE <c>tokenizer.model</c> (Llama 2, TinyLlama, Mistral v0.1).</summary>
    SentencePiece,
}
