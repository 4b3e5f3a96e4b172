using FineTuning.Core.IO;
using static TorchSharp.torch;

namespace FineTuning.Core.Strategies.Lora;

/// <summary>
/// PEFT's adapter folder layout and tensor names: <c>adapter_config.json</c> plus <c>adapter_model.safetensors</c>
/// (metadata <c>{"format": "pt"}</c>), the adapter <c>default</c> in the folder itself and any other adapter in
/// <c>folder/&lt;name&gt;/</c>; keys are the model's parameter names prefixed with <c>base_model.model.</c> and without
/// the adapter name (<c>base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight</c>).
/// </summary>
public static class PeftAdapterFiles
{
    /// <summary>The weights file name.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>The prefix of every saved key (<c>PeftModel.base_model</c> → <c>LoraModel.model</c>).</summary>
    public const string KeyPrefix = "base_model.model.";

    /// <summary>Where an adapter is saved: the folder itself for <c>default</c>, else the sub-folder named after the adapter.</summary>
    /// <param name="directory">The save folder.</param>
    /// <param name="adapterName">The adapter name.</param>
    /// <returns>The adapter's folder.</returns>
    public static string AdapterDirectory(string directory, string adapterName) =>
        adapterName == LoraStrategy.DefaultAdapterName ? directory : Path.Combine(directory, adapterName);

    /// <summary>
    /// The saved key of an in-memory parameter name: <c>base_model.model.</c> + the name without the adapter
    /// segment; DoRA's magnitude loses its <c>.weight</c> suffix (<c>…q_proj.lora_magnitude_vector</c>) and a
    /// modules_to_save copy is saved under the original module's name (<c>lm_head.modules_to_save.default.weight</c>
    /// → <c>base_model.model.lm_head.weight</c>).
    /// </summary>
    /// <param name="parameterName">The name as <c>named_parameters()</c> gives it.</param>
    /// <param name="adapterName">The adapter it belongs to.</param>
    /// <returns>The PEFT key.</returns>
    public static string ToPeftKey(string parameterName, string adapterName)
    {
        ArgumentNullException.ThrowIfNull(parameterName);
        var segments = parameterName.Split('.').ToList();
        for (var i = 0; i + 1 < segments.Count; i++)
        {
            if (segments[i + 1] != adapterName)
            {
                continue;
            }

            switch (segments[i])
            {
                case "lora_A" or "lora_B":
                    segments.RemoveAt(i + 1);
                    break;
                case "lora_magnitude_vector":
                    segments.RemoveRange(i + 1, segments.Count - i - 1);
                    break;
                case "modules_to_save":
                    segments.RemoveRange(i, 2);
                    break;
            }
        }

        return KeyPrefix + string.Join('.', segments);
    }

    /// <summary>Writes the weights file of one adapter, atomically.</summary>
    /// <param name="directory">The adapter's folder (created when missing).</param>
    /// <param name="tensors">PEFT keys and tensors (written in their own dtype).</param>
    public static void WriteWeights(string directory, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        Directory.CreateDirectory(directory);
        SafetensorsWriter.Write(Path.Combine(directory, WeightsFileName), tensors, SafetensorsWriter.DefaultMetadata);
    }

    /// <summary>
    /// Reads an adapter's weights file into the tensors it must fill. Every key must be present with the expected
    /// shape and no other key may be present; all of this is checked before anything is read.
    /// </summary>
    /// <param name="directory">The adapter's folder.</param>
    /// <param name="expected">PEFT keys and the tensors to fill (converted to their dtype).</param>
    /// <param name="explainUnexpected">Explains why a key in the file has no place in the model (e.g. the module does not exist).</param>
    /// <exception cref="FileNotFoundException">The weights file is missing.</exception>
    /// <exception cref="CheckpointFormatException">A tensor is missing, extra or has the wrong shape.</exception>
    public static void ReadWeights(string directory, IReadOnlyDictionary<string, Tensor> expected, Func<string, string> explainUnexpected)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(explainUnexpected);
        var path = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(path))
        {
            var hasBin = File.Exists(Path.Combine(directory, "adapter_model.bin"));
            throw new FileNotFoundException(
                $"'{directory}' holds no {WeightsFileName}{(hasBin ? " (only adapter_model.bin, a pickle this library does not read; re-save it with safe_serialization=True)" : "")}.", path);
        }

        using var reader = new SafetensorsReader(path);
        reader.ReadExactly(
            expected,
            unexpected => new CheckpointFormatException(
                $"Adapter file '{path}' has tensor '{unexpected[0]}' that this model has no place for: {explainUnexpected(unexpected[0])}" +
                (unexpected.Count > 1 ? $" ({unexpected.Count - 1} more unexpected: {string.Join(", ", unexpected.Skip(1).Take(5))}{(unexpected.Count > 6 ? ", …" : "")})" : ""),
                path,
                unexpected[0]),
            missing => new CheckpointFormatException(
                $"Adapter file '{path}' lacks tensor '{missing[0]}' (shape {SafetensorsTensorInfo.FormatShape(expected[missing[0]].shape)}) of module '{ModuleOf(missing[0])}'" +
                (missing.Count > 1 ? $" and {missing.Count - 1} more: {string.Join(", ", missing.Skip(1).Take(5))}{(missing.Count > 6 ? ", …" : "")}." : "."),
                path,
                missing[0]),
            (key, info) => new CheckpointFormatException(
                $"Adapter file '{path}': tensor '{key}' of module '{ModuleOf(key)}' has shape {info.ShapeText}, but the model expects {SafetensorsTensorInfo.FormatShape(expected[key].shape)} (a different base model, or a different r?).",
                path,
                key));
    }

    /// <summary>The module a PEFT key belongs to, without the prefix (<c>model.layers.0.self_attn.q_proj</c>).</summary>
    /// <param name="key">A PEFT key.</param>
    /// <returns>The module's full name in the base model.</returns>
    public static string ModuleOf(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var name = key.StartsWith(KeyPrefix, StringComparison.Ordinal) ? key[KeyPrefix.Length..] : key;
        foreach (var marker in new[] { ".lora_A.", ".lora_B.", ".lora_magnitude_vector", ".base_layer." })
        {
            var at = name.IndexOf(marker, StringComparison.Ordinal);
            if (at >= 0)
            {
                return name[..at];
            }
        }

        var dot = name.LastIndexOf('.');
        return dot < 0 ? name : name[..dot];
    }
}
