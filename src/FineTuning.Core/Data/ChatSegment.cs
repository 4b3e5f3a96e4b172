namespace FineTuning.Core.Data;

/// <summary>
/// A piece of rendered chat text. Assistant replies and their end marker are trainable; role headers, user and
/// system text are not (the trainer masks their loss).
/// </summary>
/// <param name="Text">The rendered text.</param>
/// <param name="IsTrainable">Whether the model should learn to produce this text.</param>
public sealed record ChatSegment(string Text, bool IsTrainable);
