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
    /// <returns>The mean loss, perplexity, token count, token accuracy and exact-match share.</returns>
    public static EvaluationResult Evaluate(CausalLanguageModel model, IEnumerable<TokenizedExample> examples, bool trainableTokensOnly = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(examples);
        return Evaluate(model, examples.ToList(), trainableTokensOnly, batchSize: 1, cancellationToken);
    }

    /// <summary>Scores examples in right-padded batches of <paramref name="batchSize"/> (the trainer's evaluation).</summary>
    internal static EvaluationResult Evaluate(CausalLanguageModel model, IReadOnlyList<TokenizedExample> examples, bool trainableTokensOnly, int batchSize, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentOutOfRangeException.ThrowIfLessThan(batchSize, 1);
        for (var i = 0; i < examples.Count; i++)
        {
            if (examples[i].Length > model.Config.MaxPositionEmbeddings)
            {
                throw new ArgumentException($"Example {i + 1} has {examples[i].Length} tokens, more than the model's max_position_embeddings ({model.Config.MaxPositionEmbeddings}).", nameof(examples));
            }
        }

        // Examples shorter than two tokens, or without a trainable token to score, predict nothing.
        var scorable = examples.Where(e => e.HasTargets(trainableTokensOnly)).Select(PackedRow.Single).ToList();
        double totalLoss = 0;
        long tokens = 0, correctTokens = 0, correctExamples = 0;
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            foreach (var rows in scorable.Chunk(batchSize))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var batch = BatchCollator.Collate(rows, trainableTokensOnly);
                var (loss, correct, exact) = NextTokenLoss.Score(model, batch, withAccuracy: true);
                totalLoss += loss.item<float>();
                tokens += batch.TargetCount;
                correctTokens += correct;
                correctExamples += exact;
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

        return new EvaluationResult(totalLoss / tokens, tokens, examples.Count)
        {
            TokenAccuracy = (double)correctTokens / tokens,
            ExactMatch = (double)correctExamples / scorable.Count,
        };
    }
}
