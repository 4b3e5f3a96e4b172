namespace FineTuning.Core.Training;

/// <summary>How the learning rate moves after warmup.</summary>
public enum ScheduleKind
{
    /// <summary>Stays at the peak.</summary>
    Constant,

    /// <summary>Falls linearly from the peak to the minimum at the last step.</summary>
    Linear,

    /// <summary>Follows half a cosine from the peak to the minimum at the last step.</summary>
    Cosine,
}
