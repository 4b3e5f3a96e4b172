namespace FineTuning.Core.Strategies;

/// <summary>
/// A strategy that decides what trains from the task data itself (OPD, Optimal Parameter Decoupling, scores
/// parameters on it). The trainer calls <see cref="Prepare"/> with the formatted training data before the first
/// optimizer step when <see cref="IsPrepared"/> is false; a resumed run loads the saved selection through
/// <see cref="IParameterStrategy.Load"/> instead. Until it is prepared, such a strategy may expose no trainable parameter.
/// </summary>
public interface ITaskDataStrategy : IParameterStrategy
{
    /// <summary>Whether the strategy has chosen its trainable parameters (by <see cref="Prepare"/> or <see cref="IParameterStrategy.Load"/>).</summary>
    bool IsPrepared { get; }

    /// <summary>Chooses the trainable parameters from the task data; called once, after <see cref="IParameterStrategy.Apply"/>.</summary>
    /// <param name="data">The tokenized task data and how to format other examples the same way.</param>
    void Prepare(TaskData data);
}
