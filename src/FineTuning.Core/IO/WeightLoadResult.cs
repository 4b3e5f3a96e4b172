namespace FineTuning.Core.IO;

/// <summary>What <see cref="HuggingFaceWeights.Load"/> did, for logging.</summary>
/// <param name="TensorsLoaded">The number of model tensors filled from the files.</param>
/// <param name="BytesRead">The number of tensor data bytes read from the files.</param>
/// <param name="FilesRead">The full paths of the safetensors files read, in reading order.</param>
/// <param name="IgnoredUnexpectedTensors">File tensors skipped because the options allow them to have no model counterpart.</param>
/// <param name="IgnoredMissingTensors">Model tensors left untouched because the options allow them to be absent from the files.</param>
public sealed record WeightLoadResult(
    int TensorsLoaded,
    long BytesRead,
    IReadOnlyList<string> FilesRead,
    IReadOnlyList<string> IgnoredUnexpectedTensors,
    IReadOnlyList<string> IgnoredMissingTensors);
