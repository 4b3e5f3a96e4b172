using FineTuning.Core.IO;
using FineTuning.Core.Models;
using FineTuning.Core.Strategies;

namespace FineTuning.Core.Tests.Training;

/// <summary>A test-only strategy that trains the parameters whose names match a predicate (e.g. only the norms) and saves them as one safetensors file.</summary>
internal sealed class SubsetStrategy(Func<string, bool> trains, string method = "subset") : IParameterStrategy
{
    public const string FileName = "subset.safetensors";

    public static SubsetStrategy NormsOnly() => new(name => name.EndsWith("norm.weight", StringComparison.Ordinal), "norms");

    public static SubsetStrategy HeadOnly() => new(name => name == "lm_head.weight", "head");

    public string Method => method;

    public CausalLanguageModel? Model { get; private set; }

    public bool SupportsMerge => false;

    public int SaveCount { get; private set; }

    /// <summary>When set, the Nth call of <see cref="Save"/> (1-based) throws after writing part of its file.</summary>
    public int? FailOnSave { get; init; }

    public void Apply(CausalLanguageModel model, StrategyContext context)
    {
        foreach (var (name, p) in model.named_parameters())
        {
            p.requires_grad = trains(name);
        }

        Model = model;
    }

    public IReadOnlyList<NamedParameter> TrainableParameters() =>
        Model!.named_parameters().Where(p => p.parameter.requires_grad).Select(p => new NamedParameter(p.name, p.parameter)).ToList();

    public void MergeAndUnload() => throw new NotSupportedException();

    public void Remove() => Model = null;

    public void Save(string directory)
    {
        SaveCount++;
        Directory.CreateDirectory(directory);
        if (SaveCount == FailOnSave)
        {
            File.WriteAllText(Path.Combine(directory, FileName), "partial");
            throw new IOException("Simulated failure while saving.");
        }

        SafetensorsWriter.Write(Path.Combine(directory, FileName), TrainableParameters().Select(p => new KeyValuePair<string, TorchSharp.torch.Tensor>(p.Name, p.Parameter)));
    }

    public void Load(string directory)
    {
        using var reader = new SafetensorsReader(Path.Combine(directory, FileName));
        foreach (var p in TrainableParameters())
        {
            reader.ReadInto(p.Name, p.Parameter);
        }
    }
}
