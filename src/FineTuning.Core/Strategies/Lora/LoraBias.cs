namespace FineTuning.Core.Strategies.Lora;

/// <summary>Which bias vectors train with a LoRA adapter (PEFT's <c>bias</c> option).</summary>
public enum LoraBias
{
    /// <summary><c>"none"</c>: no bias trains (the default).</summary>
    None,

    /// <summary><c>"all"</c>: every bias of the model trains and is saved with the adapter.</summary>
    All,

    /// <summary><c>"lora_only"</c>: the biases of the layers LoRA wraps train and are saved.</summary>
    LoraOnly,
}
