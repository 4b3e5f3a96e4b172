using FineTuning.Core.Data;
using FineTuning.Core.Evaluation;
using FineTuning.Core.Generation;
using FineTuning.Core.Tests.Samples;
using FineTuning.Core.Training;
using Xunit;

namespace FineTuning.Core.Tests.Learning;

/// <summary>
/// The pretrained base of the word-map task, built once per test class: the random tiny preset (seed 1, GPT-2
/// tokenizer) fully fine-tuned through the builder on pretrain.jsonl (the first word table) and saved to a temporary
/// Hugging Face folder — the recipe of eng/demo.sh with fewer steps. The LoRA run on train.jsonl (the second table)
/// and the QLoRA run on it are done on first use and shared too.
/// </summary>
public sealed class WordMapBase : IDisposable
{
    private readonly TempDirectory temp = new();
    private readonly Lazy<LoraRun> lora;
    private readonly Lazy<LoraRun> qlora;
    private readonly Dictionary<string, IDisposable> shared = [];

    public WordMapBase()
    {
        var random = TinyModels.WritePreset(temp.File("random"), seed: 1);
        Directory = temp.File("base");
        Train(FineTuner.Create().WithModel(random).WithFullSft().WithOutput(Directory), steps: 150, learningRate: 3e-3, WordMap.PretrainPath).Tuner.Dispose();
        using var untrained = FineTuner.Create().WithModel(Directory).WithFullSft().Build();
        BaseEval = untrained.Evaluate(Eval);
        BaseGreedyAccuracy = GreedyAccuracy(untrained);
        lora = new(() =>
        {
            var adapter = temp.File("adapter");
            var result = Train(FineTuner.Create().WithModel(Directory).WithLoRA(r: 16, alpha: 32, targets: ["all-linear"]).WithOutput(adapter), steps: 100, learningRate: 5e-3, WordMap.TrainPath, WordMap.EvalPath);
            return new LoraRun(result, result.Tuner.Evaluate(Eval), adapter);
        });
        qlora = new(() =>
        {
            var adapter = temp.File("qlora-adapter");
            var result = Train(FineTuner.Create().WithModel(Directory).WithQLoRA(r: 16).WithOutput(adapter), steps: 100, learningRate: 5e-3, WordMap.TrainPath, WordMap.EvalPath);
            return new LoraRun(result, result.Tuner.Evaluate(Eval), adapter);
        });
    }

    /// <summary>The validation examples (unseen triples of the second table).</summary>
    public static IReadOnlyList<TrainingExample> Eval { get; } = JsonlDataset.Load(WordMap.EvalPath);

    /// <summary>The base model folder (config, weights, GPT-2 tokenizer files).</summary>
    public string Directory { get; }

    /// <summary>The base on the validation file (completion tokens only).</summary>
    public EvaluationResult BaseEval { get; }

    /// <summary>The base's share of validation prompts answered exactly by greedy decoding.</summary>
    public double BaseGreedyAccuracy { get; }

    /// <summary>LoRA r=16, alpha 32, all-linear, 100 steps of batch 16 at 5e-3 on train.jsonl; the adapter saved.</summary>
    public LoraRun Lora => lora.Value;

    /// <summary>QLoRA with the builder's defaults (r 16, alpha 32, all-linear, NF4 + double quant, bf16 compute), trained as <see cref="Lora"/>.</summary>
    public LoraRun QLora => qlora.Value;

    /// <summary>Whether <see cref="Lora"/> has been trained already.</summary>
    public bool LoraStarted => lora.IsValueCreated;

    /// <summary>A run built on first use and kept (and disposed) with the fixture, e.g. one method's fine-tune shared by a test class.</summary>
    /// <param name="key">The run's name.</param>
    /// <param name="create">Builds the run from this base.</param>
    /// <returns>The run.</returns>
    public T Shared<T>(string key, Func<WordMapBase, T> create)
        where T : IDisposable
    {
        lock (shared)
        {
            if (!shared.TryGetValue(key, out var run))
            {
                run = create(this);
                shared[key] = run;
            }

            return (T)run;
        }
    }

    /// <summary>A path under the fixture's temporary folder.</summary>
    public string NewFolder(string name) => temp.File(name);

    /// <summary>Trains on the word map as eng/demo.sh does: constant learning rate, batch 16, seed 1.</summary>
    public static FineTuneResult Train(FineTunerBuilder builder, int steps, double learningRate, string trainPath, string? evalPath = null) => builder
        .WithOptimizer(o => o with { LearningRate = learningRate })
        .WithSchedule(ScheduleKind.Constant)
        .WithTraining(t => t with { MaxSteps = steps, BatchSize = 16, Seed = 1 })
        .Train(trainPath, evalPath);

    /// <summary>
    /// The share of validation prompts whose greedy three-token continuation is the completion the word table gives
    /// (computed from the table, not read from the file or the evaluator).
    /// </summary>
    public static double GreedyAccuracy(FineTuner tuner)
    {
        var eval = WordMap.Eval;
        var correct = eval.Count(e =>
            tuner.Tokenizer.Decode(TextGenerator.Generate(tuner.Model, tuner.Tokenizer.Encode(e.Prompt), new GenerationOptions { MaxNewTokens = 3 })) == WordMap.Expected(e.Prompt));
        return (double)correct / eval.Count;
    }

    public void Dispose()
    {
        foreach (var run in new[] { lora, qlora }.Where(r => r.IsValueCreated))
        {
            run.Value.Result.Tuner.Dispose();
        }

        foreach (var run in shared.Values)
        {
            run.Dispose();
        }

        temp.Dispose();
    }
}

/// <summary>The test classes that share one <see cref="WordMapBase"/> (building it takes about a minute).</summary>
[CollectionDefinition(Name)]
public sealed class WordMapCollection : ICollectionFixture<WordMapBase>
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Word-map base";
}

/// <summary>A shared LoRA or QLoRA run: the result (its tuner holds the trained, unmerged model), its evaluation and the adapter folder.</summary>
public sealed record LoraRun(FineTuneResult Result, EvaluationResult Eval, string AdapterDirectory);
