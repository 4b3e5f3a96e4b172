using static TorchSharp.torch;

namespace FineTuning.Core.IO;

/// <summary>Where and in which dtype to materialise a Hugging Face model folder.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>The device to build the model on (default CPU). Any TorchSharp device works, e.g. <c>cuda:0</c>.</summary>
    public Device? Device { get; init; }

    /// <summary>The weight dtype; <c>null</c> keeps the config's <c>torch_dtype</c>. File tensors are converted on load.</summary>
    public ScalarType? DType { get; init; }
}
