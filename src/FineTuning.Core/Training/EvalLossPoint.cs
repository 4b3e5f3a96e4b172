namespace FineTuning.Core.Training;

/// <summary>One evaluation during training.</summary>
/// <param name="Step">The optimizer step after which the model was evaluated.</param>
/// <param name="Loss">The mean cross-entropy per scored token of the evaluation data.</param>
public sealed record EvalLossPoint(int Step, double Loss);
