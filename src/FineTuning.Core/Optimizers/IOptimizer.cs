namespace FineTuning.Core.Optimizers;

/// <summary>What the trainer needs of an optimizer, whichever <see cref="OptimizerKind"/> it is.</summary>
internal interface IOptimizer : IDisposable
{
    /// <summary>Updates applied so far (Adam's bias-correction step).</summary>
    int StepCount { get; }

    /// <summary>
    /// Clips the gradients to <paramref name="maxGradNorm"/> and applies one update with <paramref name="learningRate"/>.
    /// Parameters without a gradient are left alone. When the gradient norm is not finite nothing changes and the
    /// step is not counted.
    /// </summary>
    /// <param name="learningRate">This step's learning rate.</param>
    /// <param name="maxGradNorm">The global L2 norm to clip to; <c>null</c> does not clip.</param>
    /// <returns>The global gradient L2 norm before clipping (0 when no parameter has a gradient).</returns>
    double Step(double learningRate, double? maxGradNorm);

    /// <summary>Drops every gradient (sets it to none, freeing its memory until the next backward).</summary>
    void ZeroGrad();

    /// <summary>Writes the state to a safetensors file, atomically.</summary>
    /// <param name="path">The file.</param>
    void Save(string path);

    /// <summary>Restores state written by <see cref="Save"/> for the same parameters.</summary>
    /// <param name="path">The file.</param>
    /// <exception cref="IO.CheckpointFormatException">The file does not hold this optimizer's state for these parameters.</exception>
    void Load(string path);
}
