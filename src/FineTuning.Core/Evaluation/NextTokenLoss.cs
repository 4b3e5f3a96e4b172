using FineTuning.Core.Data;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Evaluation;

/// <summary>The causal language-modelling loss shared by training and evaluation.</summary>
internal static class NextTokenLoss
{
    /// <summary>
    /// Runs the model on a batch and returns the summed fp32 cross-entropy of every target position, predicted from
    /// the position before it (a scalar in the current dispose scope). Divide by the target count of the whole
    /// effective batch to get the token-weighted mean.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="batch">The collated batch.</param>
    /// <returns>The summed loss.</returns>
    public static Tensor Sum(CausalLanguageModel model, CollatedBatch batch) => Score(model, batch, withAccuracy: false).LossSum;

    /// <summary>
    /// Like <see cref="Sum"/>, and also counts target positions whose most likely token is the target, and rows
    /// (examples, when each row holds one) whose every target is.
    /// </summary>
    /// <param name="model">The model.</param>
    /// <param name="batch">The collated batch.</param>
    /// <param name="withAccuracy">Count correct tokens and rows; otherwise the counts are 0.</param>
    /// <returns>The summed loss (a scalar tensor), correct target tokens and fully correct rows.</returns>
    public static (Tensor LossSum, long CorrectTokens, long CorrectRows) Score(CausalLanguageModel model, CollatedBatch batch, bool withAccuracy)
    {
        using var logits = model.call(batch.ToModelInput(model.Device)).Logits;
        var labels = batch.LabelsTensor(model.Device);
        var shifted = logits.narrow(1, 0, batch.Length - 1);
        var targets = labels.narrow(1, 1, batch.Length - 1);
        var loss = nn.functional.cross_entropy(shifted.reshape(-1, logits.shape[2]), targets.reshape(-1), ignore_index: CollatedBatch.IgnoreIndex, reduction: nn.Reduction.Sum);
        if (!withAccuracy)
        {
            return (loss, 0, 0);
        }

        using var scope = NewDisposeScope();
        var scored = targets.ne(CollatedBatch.IgnoreIndex);
        var hit = shifted.argmax(-1).eq(targets).logical_and(scored);
        var correctTokens = hit.sum().item<long>();
        var rowsAllCorrect = hit.sum(1).eq(scored.sum(1)).logical_and(scored.any(1)).sum().item<long>();
        return (loss, correctTokens, rowsAllCorrect);
    }
}
