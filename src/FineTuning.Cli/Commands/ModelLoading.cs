using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;
using FineTuning.Core.Strategies.Lora;
using FineTuning.Core.Strategies.QLora;
using TorchSharp;

namespace FineTuning.Cli.Commands;

/// <summary>Loads a model folder and applies the <c>--adapter</c> folders given on the command line.</summary>
internal static class ModelLoading
{
    /// <summary>
    /// Loads the base and applies each adapter. Several LoRA adapters are all active at once, so their updates add
    /// up (PEFT's <c>set_adapter([...])</c>). On a 4-bit base (a "-bnb-4bit" folder) the adapters run on the 4-bit
    /// weights, as QLoRA trained them.
    /// </summary>
    public static CausalLanguageModel Load(string directory, torch.Device device, torch.ScalarType? dtype, IReadOnlyList<string> adapters)
    {
        var model = HuggingFaceModel.Load(directory, new ModelLoadOptions { Device = device, DType = dtype });
        try
        {
            if (adapters.Count == 0)
            {
                return model;
            }

            var first = AdapterLoader.Load(adapters[0], model);
            if (adapters.Count > 1)
            {
                var lora = first as LoraStrategy ?? (first as QLoraStrategy)?.Lora ?? throw new UsageException("Several --adapter folders can only be combined when they are all LoRA adapters.");
                var names = new List<string> { LoraStrategy.DefaultAdapterName };
                for (var i = 1; i < adapters.Count; i++)
                {
                    if (AdapterLoader.ReadPeftType(adapters[i]) != "LORA")
                    {
                        throw new UsageException($"--adapter {adapters[i]} is not a LoRA adapter; only LoRA adapters combine.");
                    }

                    var name = $"adapter{i}";
                    lora.LoadAdapter(adapters[i], name);
                    names.Add(name);
                }

                lora.SetActiveAdapters([.. names]);
            }

            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
