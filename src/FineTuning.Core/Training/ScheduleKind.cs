namespace FineTuning.Core.Training;

/// <summary>How the learning rate moves after warmup.</summary>
public enum ScheduleKind
{
    /// <summary>Stays at the peak.</summary>
    Constant,

    /// <summary>Falls linearly from the peak, reaching the minimum just after the last step (as Hugging Face's linear schedule).</summary>
    Linear,

    /// <summary>Follows half a cosine from the peak, reaching the minimum just after the last step (as Hugging Face's cosine schedule).</summary>
    Cosine,
}
