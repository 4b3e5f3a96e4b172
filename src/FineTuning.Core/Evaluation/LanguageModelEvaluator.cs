using FineTuning.Core.Data;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Evaluation;

/// <summary>Scores examples one at a time: each token from the second on is predicted from the ones before it.</summary>
public static class LanguageModelEvaluator
{
    /// <summary>Computes the mean cross-entropy over all predicted tokens of the examples.</summary>
    /// <param name="model">The model (evaluated without gradients, in evaluation mode).</param>
    /// <param name="examples">Tokenized examples; those shorter than two tokens predict nothing and are skipped.</param>
    /// <param name="trainableTokensOnly">Score only tokens marked trainable (completion/assistant), as the trainer's loss does.</param>
    /// <param name="cancellationToken">Checked between examples.</param>
    /// <returns>The mean loss, perplexity and token count.</returns>
    public static EvaluationResult Evaluate(CausalLanguageModel model, IEnumerable<TokenizedExample> examples, bool trainableTokensOnly = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(examples);
        double totalLoss = 0;
        long tokens = 0;
        var count = 0;
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var example in examples)
            {
                cancellationToken.ThrowIfCancellationRequested();
                count++;
                var length = example.InputIds.Count;
                if (length > model.Config.MaxPositionEmbeddings)
                {
                    throw new ArgumentException($"Example {count} has {length} tokens, more than the model's max_position_embeddings ({model.Config.MaxPositionEmbeddings}).", nameof(examples));
                }

                var targets = Enumerable.Range(1, length - 1)
                    .Select(i => !trainableTokensOnly || example.TrainableMask[i] ? (long)example.InputIds[i] : -100L)
                    .ToArray();
                var scored = targets.Count(t => t != -100);
                if (scored == 0)
                {
                    continue;
                }

                using var scope = NewDisposeScope();
                var ids = tensor(example.InputIds.Select(i => (long)i).ToArray(), [1, length], dtype: ScalarType.Int64, device: model.Device);
                var logits = model.call(ModelInput.FromIds(ids)).Logits;
                var predicted = logits[0].narrow(0, 0, length - 1);
                var labels = tensor(targets, dtype: ScalarType.Int64, device: model.Device);
                totalLoss += nn.functional.cross_entropy(predicted, labels, ignore_index: -100, reduction: nn.Reduction.Sum).item<float>();
                tokens += scored;
            }
        }
        finally
        {
            model.train(wasTraining);
        }

        if (tokens == 0)
        {
            throw new ArgumentException("No example has a token to predict (each needs at least two tokens).", nameof(examples));
        }

        return new EvaluationResult(totalLoss / tokens, tokens, count);
    }
}
