namespace FineTuning.Core.Evaluation;

/// <summary>
/// Mean next-token cross-entropy over every scored token of a data set, its perplexity, and how often the most
/// likely token is the right one.
/// </summary>
/// <param name="Loss">Mean negative log-likelihood per predicted token (nats).</param>
/// <param name="Tokens">Number of predicted tokens scored.</param>
/// <param name="Examples">Number of examples scored.</param>
public sealed record EvaluationResult(double Loss, long Tokens, int Examples)
{
    /// <summary><c>exp(Loss)</c>.</summary>
    public double Perplexity => Math.Exp(Loss);

    /// <summary>Share of scored tokens whose most likely prediction (argmax) is the actual token.</summary>
    public double TokenAccuracy { get; init; }

    /// <summary>
    /// Share of scored examples whose every scored token is the argmax prediction. With completion-only scoring this
    /// is exact-match accuracy: greedy decoding of the prompt reproduces the completion exactly.
    /// </summary>
    public double ExactMatch { get; init; }
}
