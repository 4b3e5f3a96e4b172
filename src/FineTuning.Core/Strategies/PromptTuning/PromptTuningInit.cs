namespace FineTuning.Core.Strategies.PromptTuning;

/// <summary>How the virtual-token embeddings start (PEFT's <c>PromptTuningInit</c>).</summary>
public enum PromptTuningInit
{
    /// <summary>N(0, 1), as a fresh <c>nn.Embedding</c> (<c>RANDOM</c>, PEFT's default).</summary>
    Random,

    /// <summary>
    /// The word embeddings of a text's tokens (<c>TEXT</c>): the text is tokenized (with special tokens, as
    /// <c>tokenizer(text)</c> does), cut to the virtual-token count when longer, else repeated ⌈T/len⌉ times and cut.
    /// </summary>
    Text,

    /// <summary>The word embeddings of token ids drawn uniformly from the vocabulary (<c>SAMPLE_VOCAB</c>).</summary>
    SampleVocab,
}
