namespace FineTuning.Core.Models;

/// <summary>The LLaMA-family architectures this library builds, named by Hugging Face's <c>model_type</c>.</summary>
public enum ModelFamily
{
    /// <summary><c>llama</c>: Llama 2, Llama 3.x, TinyLlama, SmolLM2.</summary>
    Llama,

    /// <summary><c>mistral</c>: Mistral 7B (optionally with sliding-window attention).</summary>
    Mistral,

    /// <summary><c>qwen2</c>: Qwen2 and Qwen2.5 (q/k/v projections carry biases).</summary>
    Qwen2,
}
