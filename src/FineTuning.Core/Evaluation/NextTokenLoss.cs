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
    public static Tensor Sum(CausalLanguageModel model, CollatedBatch batch)
    {
        using var logits = model.call(batch.ToModelInput(model.Device)).Logits;
        var labels = batch.LabelsTensor(model.Device);
        var predicted = logits.narrow(1, 0, batch.Length - 1).reshape(-1, logits.shape[2]);
        var targets = labels.narrow(1, 1, batch.Length - 1).reshape(-1);
        return nn.functional.cross_entropy(predicted, targets, ignore_index: CollatedBatch.IgnoreIndex, reduction: nn.Reduction.Sum);
    }
}
