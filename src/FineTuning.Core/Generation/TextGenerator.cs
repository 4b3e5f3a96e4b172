using FineTuning.Core.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace FineTuning.Core.Generation;

/// <summary>Autoregressive decoding with a KV cache: the prompt is processed once, then one position per step.</summary>
public static class TextGenerator
{
    /// <summary>Generates token ids after a prompt.</summary>
    /// <param name="model">The model (put in evaluation mode for the call).</param>
    /// <param name="promptIds">The prompt's token ids (at least one).</param>
    /// <param name="options">Decoding options.</param>
    /// <param name="cancellationToken">Checked between steps.</param>
    /// <returns>The new token ids (a stop token, if hit, is the last one).</returns>
    public static IReadOnlyList<int> Generate(CausalLanguageModel model, IReadOnlyList<int> promptIds, GenerationOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(promptIds);
        ArgumentNullException.ThrowIfNull(options);
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("The prompt must have at least one token (for example BOS).", nameof(promptIds));
        }

        var vocab = model.Config.VocabSize;
        foreach (var id in promptIds.Where(id => id < 0 || id >= vocab).Take(1))
        {
            throw new ArgumentException($"Prompt token id {id} is outside the model's vocabulary of {vocab}.", nameof(promptIds));
        }

        var sampler = new TokenSampler(options, model.Device);
        var stop = options.StopTokenIds.ToHashSet();
        var generated = new List<int>(options.MaxNewTokens);
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var noGrad = no_grad();
            using var cache = new KeyValueCache(model.Config.NumHiddenLayers);
            var next = promptIds.Select(id => (long)id).ToArray();
            while (generated.Count < options.MaxNewTokens)
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var step = NewDisposeScope();
                var ids = tensor(next, [1, next.Length], dtype: ScalarType.Int64, device: model.Device);
                var logits = model.call(new ModelInput { InputIds = ids, Cache = cache, LastPositionLogitsOnly = true }).Logits;
                var token = sampler.Next(logits[0, 0]);
                generated.Add(token);
                if (stop.Contains(token))
                {
                    break;
                }

                next = [token];
            }
        }
        finally
        {
            model.train(wasTraining);
        }

        return generated;
    }
}
