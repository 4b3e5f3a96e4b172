namespace FineTuning.Core.IO;

/// <summary>What <see cref="HuggingFaceWeights.Save"/> wrote, for logging.</summary>
/// <param name="TensorsWritten">The number of tensors written.</param>
/// <param name="TotalBytes">The total size of the tensor data written (the index's <c>total_size</c>).</param>
/// <param name="WeightFiles">The full paths of the safetensors files written, in order.</param>
/// <param name="IndexFile">The full path of <c>model.safetensors.index.json</c> when the weights were sharded, otherwise <see langword="null"/>.</param>
public sealed record WeightSaveResult(
    int TensorsWritten,
    long TotalBytes,
    IReadOnlyList<string> WeightFiles,
    string? IndexFile);
