using BenchmarkDotNet.Attributes;
using FineTuning.Core.Generation;
using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Benchmarks;

/// <summary>
/// Greedy generation of 32 tokens after a 32-token prompt (batch 1, fp32): the library's
/// <see cref="TextGenerator"/>, which uses a KV cache, against a loop that re-runs the whole sequence each step.
/// </summary>
public class GenerationBenchmarks
{
    private const int PromptLength = 32;
    private const int NewTokens = 32;

    private CausalLanguageModel model = null!;
    private int[] prompt = [];

    [GlobalSetup]
    public void Setup()
    {
        model = BenchmarkModels.Create(ScalarType.Float32);
        using (var ids = BenchmarkModels.RandomIds(1, PromptLength, seed: 7))
        {
            prompt = ids.data<long>().Select(id => (int)id).ToArray();
        }

        // Not a timing: both paths should pick the same tokens. Report a mismatch (fp rounding can flip a
        // near-tie) without failing the run.
        var cached = WithKvCache();
        var recomputed = WithoutCache();
        if (!cached.SequenceEqual(recomputed))
        {
            Console.WriteLine($"// GenerationBenchmarks: cached and uncached greedy outputs differ: [{string.Join(",", cached)}] vs [{string.Join(",", recomputed)}]");
        }
    }

    [GlobalCleanup]
    public void Cleanup() => model.Dispose();

    /// <summary>The library path: the prompt once, then one position per step against the KV cache.</summary>
    [Benchmark(Baseline = true)]
    public IReadOnlyList<int> WithKvCache() =>
        TextGenerator.Generate(model, prompt, new GenerationOptions { MaxNewTokens = NewTokens });

    /// <summary>No cache: every step runs the model over the prompt and all tokens generated so far.</summary>
    [Benchmark]
    public IReadOnlyList<int> WithoutCache()
    {
        var sequence = prompt.Select(id => (long)id).ToList();
        var generated = new List<int>(NewTokens);
        model.eval();
        using var noGrad = no_grad();
        for (var step = 0; step < NewTokens; step++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(sequence.ToArray(), [1, sequence.Count], dtype: ScalarType.Int64);
            var logits = model.call(new ModelInput { InputIds = ids, LastPositionLogitsOnly = true }).Logits;
            var token = (int)logits[0, 0].argmax().item<long>();
            generated.Add(token);
            sequence.Add(token);
        }

        return generated;
    }
}
