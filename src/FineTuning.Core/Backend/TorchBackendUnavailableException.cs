namespace FineTuning.Core.Backend;

/// <summary>TorchSharp's native backend (LibTorch) could not be loaded; the message says why and what to install.</summary>
public sealed class TorchBackendUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">Why loading failed and what to install.</param>
    /// <param name="inner">The error TorchSharp raised.</param>
    public TorchBackendUnavailableException(string message, Exception? inner) : base(message, inner)
    {
    }
}
