using FineTuning.Core.Data;

namespace FineTuning.Core.Strategies;

/// <summary>What the trainer gives an <see cref="ITaskDataStrategy"/> before training: the task data and its formatting.</summary>
/// <param name="Examples">The training examples, tokenized and truncated as the trainer will train on them.</param>
/// <param name="Format">Formats further examples (e.g. general calibration data) with the same tokenizer, chat template and length limit.</param>
/// <param name="LossOnCompletionOnly">Whether the loss counts completion tokens only, as in training.</param>
public sealed record TaskData(
    IReadOnlyList<TokenizedExample> Examples,
    Func<IReadOnlyList<TrainingExample>, IReadOnlyList<TokenizedExample>> Format,
    bool LossOnCompletionOnly);
