namespace FineTuning.Core.Data;

/// <summary>A conversation; the assistant messages are learned.</summary>
/// <param name="Messages">The messages, in order (at least one).</param>
public sealed record ChatExample(IReadOnlyList<ChatMessage> Messages) : TrainingExample;
