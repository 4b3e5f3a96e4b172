namespace FineTuning.Core.Training;

/// <summary>
/// Where a run stands, saved as <c>trainer_state.json</c> in every checkpoint so that a resumed run continues the
/// same trajectory. Version 1.
/// </summary>
internal sealed class TrainerState
{
    /// <summary>The layout version of this file.</summary>
    public int FormatVersion { get; set; } = 1;

    /// <summary>The strategy's method name (<c>sft</c>, <c>lora</c>…).</summary>
    public string Method { get; set; } = "";

    /// <summary>Optimizer steps done.</summary>
    public int GlobalStep { get; set; }

    /// <summary>The current epoch, from 0.</summary>
    public int Epoch { get; set; }

    /// <summary>Micro-batches of the current epoch already trained on.</summary>
    public int MicroBatchInEpoch { get; set; }

    /// <summary>Optimizer steps planned.</summary>
    public int TotalSteps { get; set; }

    /// <summary>The seed of the data order and of torch's generator.</summary>
    public long Seed { get; set; }

    /// <summary>Rows (examples or packed rows) per micro-batch.</summary>
    public int BatchSize { get; set; }

    /// <summary>Micro-batches per optimizer step.</summary>
    public int GradientAccumulationSteps { get; set; }

    /// <summary>A hash of the training rows (token ids, trainable flags, packing), to notice changed data on resume.</summary>
    public string DataFingerprint { get; set; } = "";

    /// <summary>The loss of every optimizer step.</summary>
    public List<double> LossHistory { get; set; } = [];

    /// <summary>The gradient norm of every optimizer step, before clipping.</summary>
    public List<double> GradNormHistory { get; set; } = [];

    /// <summary>Every evaluation so far.</summary>
    public List<EvalLossPoint> EvalLosses { get; set; } = [];

    /// <summary>The lowest evaluation loss so far.</summary>
    public double? BestEvalLoss { get; set; }

    /// <summary>Evaluations since the last improvement by at least the early-stopping delta.</summary>
    public int EvalsWithoutImprovement { get; set; }

    /// <summary>Real tokens trained on.</summary>
    public long TokensSeen { get; set; }

    /// <summary>Training time over all runs, in seconds.</summary>
    public double ElapsedSeconds { get; set; }

    /// <summary>The learning rate of the last step.</summary>
    public double LearningRate { get; set; }

    /// <summary>Torch's CPU generator state after the last step, base64.</summary>
    public string RngState { get; set; } = "";
}
