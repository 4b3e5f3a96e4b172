using FineTuning.Core.Generation;
using FineTuning.Core.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.Generation;

public class GenerationTests
{
    [Fact]
    public void Greedy_decoding_with_the_cache_equals_argmax_of_full_recomputation()
    {
        using var model = TinyModels.Create();
        int[] prompt = [5, 9, 13];
        var generated = TextGenerator.Generate(model, prompt, new GenerationOptions { MaxNewTokens = 12 });

        var sequence = prompt.Select(i => (long)i).ToList();
        using (no_grad())
        {
            for (var step = 0; step < 12; step++)
            {
                using var scope = NewDisposeScope();
                var logits = model.call(ModelInput.FromIds(tensor(sequence.ToArray(), [1, sequence.Count]))).Logits;
                sequence.Add(logits[0, -1].argmax().item<long>());
            }
        }

        Assert.Equal(sequence.Skip(3).Select(i => (int)i), generated);
    }

    [Fact]
    public void Sampling_is_reproducible_with_a_seed_and_stops_at_stop_tokens()
    {
        using var model = TinyModels.Create();
        var options = new GenerationOptions { MaxNewTokens = 20, Temperature = 1.5, TopK = 20, TopP = 0.95, Seed = 7 };
        var a = TextGenerator.Generate(model, [1, 2], options);
        var b = TextGenerator.Generate(model, [1, 2], options);
        var c = TextGenerator.Generate(model, [1, 2], options with { Seed = 8 });
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
        Assert.Equal(20, a.Count);

        var stopAt = a[4];
        var stopped = TextGenerator.Generate(model, [1, 2], options with { StopTokenIds = [stopAt] });
        var firstIndex = a.ToList().IndexOf(stopAt);
        Assert.Equal(a.Take(firstIndex + 1), stopped);
    }

    [Fact]
    public void Top_k_and_top_p_filter_as_worked_by_hand()
    {
        // probabilities 0.5, 0.25, 0.125, 0.125 from logits log(p).
        using var logits = tensor(new[] { 0.5f, 0.25f, 0.125f, 0.125f }).log();
        using var topK = TokenSampler.FilteredProbabilities(logits, 1.0, 2, 1.0);
        Assert.Equal(new[] { 2 / 3.0, 1 / 3.0, 0, 0 }, topK.data<float>().ToArray().Select(v => (double)v), new Models.ToleranceComparer(1e-6));
        // top-p 0.7: mass ahead of each token is 0, 0.5, 0.75, 0.875 -> keep the first two.
        using var topP = TokenSampler.FilteredProbabilities(logits, 1.0, 0, 0.7);
        Assert.Equal(new[] { 2 / 3.0, 1 / 3.0, 0, 0 }, topP.data<float>().ToArray().Select(v => (double)v), new Models.ToleranceComparer(1e-6));
        // top-p 0.5 keeps only the most likely token; temperature 2 flattens: p ∝ sqrt(p).
        using var topOnly = TokenSampler.FilteredProbabilities(logits, 1.0, 0, 0.5);
        Assert.Equal(new[] { 1.0, 0, 0, 0 }, topOnly.data<float>().ToArray().Select(v => (double)v), new Models.ToleranceComparer(1e-6));
        using var warm = TokenSampler.FilteredProbabilities(logits, 2.0, 0, 1.0);
        var roots = new[] { Math.Sqrt(0.5), Math.Sqrt(0.25), Math.Sqrt(0.125), Math.Sqrt(0.125) };
        Assert.Equal(roots.Select(r => r / roots.Sum()), warm.data<float>().ToArray().Select(v => (double)v), new Models.ToleranceComparer(1e-6));
    }

    [Fact]
    public void Invalid_options_and_prompts_are_rejected_by_name()
    {
        using var model = TinyModels.Create();
        Assert.Contains("TopP", Assert.Throws<ArgumentOutOfRangeException>(() => TextGenerator.Generate(model, [1], new GenerationOptions { TopP = 0 })).Message);
        Assert.Contains("Temperature", Assert.Throws<ArgumentOutOfRangeException>(() => TextGenerator.Generate(model, [1], new GenerationOptions { Temperature = -1 })).Message);
        Assert.Contains("vocabulary", Assert.Throws<ArgumentException>(() => TextGenerator.Generate(model, [1, 500], new GenerationOptions())).Message);
    }
}
