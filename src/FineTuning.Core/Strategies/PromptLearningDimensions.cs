namespace FineTuning.Core.Strategies;

/// <summary>The model-derived sizes a PEFT prompt-learning config records.</summary>
/// <param name="NumVirtualTokens">Virtual tokens (<c>num_virtual_tokens</c>).</param>
/// <param name="TokenDim">Width of one virtual token (<c>token_dim</c>): the hidden size for prompt tuning, kv_heads × head_dim for prefix tuning.</param>
/// <param name="NumLayers">Decoder layers (<c>num_layers</c>).</param>
/// <param name="NumAttentionHeads">Attention heads (<c>num_attention_heads</c>): the query heads for prompt tuning, the key/value heads for prefix tuning.</param>
internal sealed record PromptLearningDimensions(int NumVirtualTokens, int? TokenDim, int? NumLayers, int? NumAttentionHeads);
