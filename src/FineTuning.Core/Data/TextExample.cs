namespace FineTuning.Core.Data;

/// <summary>Plain text for language-model training: every token is learned.</summary>
/// <param name="Text">The text.</param>
public sealed record TextExample(string Text) : TrainingExample;
