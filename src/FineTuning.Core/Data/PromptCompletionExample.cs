namespace FineTuning.Core.Data;

/// <summary>A prompt and the completion the model should learn to write after it (only the completion is learned).</summary>
/// <param name="Prompt">The prompt text.</param>
/// <param name="Completion">The completion text, appended to the prompt as is.</param>
public sealed record PromptCompletionExample(string Prompt, string Completion) : TrainingExample;
