using FineTuning.Core.Data;
using Xunit;

namespace FineTuning.Core.Tests.Samples;

/// <summary>The shipped word-map task (docs/samples/word-map): three colour words mapped word for word.</summary>
internal static class WordMap
{
    public static readonly string[] Inputs = ["red", "blue", "green", "black", "white", "pink", "gold", "gray"];
    public static readonly string[] Outputs = ["apple", "river", "stone", "cloud", "tiger", "bread", "chair", "music"];

    public static string PretrainPath => SamplePath("pretrain.jsonl");

    public static string TrainPath => SamplePath("train.jsonl");

    public static string EvalPath => SamplePath("eval.jsonl");

    public static IReadOnlyList<PromptCompletionExample> Train => Load(TrainPath);

    public static IReadOnlyList<PromptCompletionExample> Eval => Load(EvalPath);

    /// <summary>The expected completion, computed from the table (not read from the file).</summary>
    public static string Expected(string prompt)
    {
        var words = prompt.Split(' ');
        Assert.Equal("map", words[0]);
        Assert.Equal("=", words[^1]);
        return " " + string.Join(' ', words[1..^1].Select(w => Outputs[Array.IndexOf(Inputs, w)]));
    }

    private static string SamplePath(string name) => Path.Combine(AppContext.BaseDirectory, "samples", "word-map", name);

    private static IReadOnlyList<PromptCompletionExample> Load(string path) =>
        JsonlDataset.Load(path).Cast<PromptCompletionExample>().ToList();
}
