using static TorchSharp.torch;

namespace FineTuning.Core.Strategies;

/// <summary>
/// A strategy that adds a term of its own to the training objective (OPD's anchor toward the base weights). The
/// trainer back-propagates <see cref="RegularizationLoss"/> once per optimizer step, after the micro-batches and
/// before clipping, so the step minimises mean token loss + the term. Reported training losses stay the data loss.
/// </summary>
public interface IRegularizedStrategy : IParameterStrategy
{
    /// <summary>The term for the current parameters (a scalar in the caller's dispose scope), or <c>null</c> for none.</summary>
    /// <returns>The term.</returns>
    Tensor? RegularizationLoss();
}
