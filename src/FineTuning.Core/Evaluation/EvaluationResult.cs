namespace FineTuning.Core.Evaluation;

/// <summary>Mean next-token cross-entropy over every predicted token of a data set, and its perplexity.</summary>
/// <param name="Loss">Mean negative log-likelihood per predicted token (nats).</param>
/// <param name="Tokens">Number of predicted tokens scored.</param>
/// <param name="Examples">Number of examples scored.</param>
public sealed record EvaluationResult(double Loss, long Tokens, int Examples)
{
    /// <summary><c>exp(Loss)</c>.</summary>
    public double Perplexity => Math.Exp(Loss);
}
