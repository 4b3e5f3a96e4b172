using FineTuning.Core.IO;
using FineTuning.Core.Models;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Strategies.PrefixTuning;

/// <summary>
/// PEFT's <c>adapter_config.json</c> for prefix tuning (<c>PrefixTuningConfig</c>): <c>peft_type</c>
/// <c>"PREFIX_TUNING"</c>; as PEFT's <c>_prepare_prompt_learning_config</c> leaves them for a model with
/// <c>num_key_value_heads</c>, <c>token_dim</c> = kv_heads × head_dim and <c>num_attention_heads</c> = kv_heads;
/// <c>num_layers</c>, <c>num_transformer_submodules</c> 1, <c>encoder_hidden_size</c>, <c>prefix_projection</c>,
/// <c>init_weights</c>.
/// </summary>
internal static class PrefixTuningAdapterConfig
{
    /// <summary>The <c>peft_type</c>.</summary>
    public const string PeftType = "PREFIX_TUNING";

    /// <summary>The dimensions PEFT derives from a model for prefix tuning (GQA aware).</summary>
    public static PromptLearningDimensions Dimensions(int virtualTokens, ModelConfig config) =>
        new(virtualTokens, config.NumKeyValueHeads * config.HeadDim, config.NumHiddenLayers, config.NumKeyValueHeads);

    /// <summary>Writes the file, atomically.</summary>
    public static void Write(string directory, PrefixTuningOptions options, ModelConfig config)
    {
        var dimensions = Dimensions(options.NumVirtualTokens, config);
        var fields = PromptLearningConfig.CommonFields(PeftType, dimensions, options.BaseModelNameOrPath);
        fields["encoder_hidden_size"] = options.EncoderHiddenSize ?? dimensions.TokenDim;
        fields["init_weights"] = options.Init == PrefixTuningInit.Zero ? "zero" : null;
        fields["prefix_projection"] = options.PrefixProjection;
        PromptLearningConfig.Write(directory, fields);
    }

    /// <summary>
    /// Reads the file and checks it against a model: after PEFT's GQA adjustment (<c>token_dim // num_attention_heads ×
    /// num_key_value_heads</c>) token_dim must be the model's kv_heads × head_dim, and num_layers its layer count.
    /// </summary>
    public static PrefixTuningOptions Read(string directory, ModelConfig config, ILogger logger) =>
        PromptLearningConfig.Read(directory, PeftType, logger, (reader, path) =>
        {
            var dimensions = PromptLearningConfig.ReadDimensions(reader, path);
            var tokenDim = dimensions.TokenDim is { } dim && dimensions.NumAttentionHeads is { } heads and > 0
                ? dim / heads * config.NumKeyValueHeads
                : dimensions.TokenDim;
            PromptLearningConfig.Expect(path, "token_dim", tokenDim, config.NumKeyValueHeads * config.HeadDim, "num_key_value_heads × head_dim");
            PromptLearningConfig.Expect(path, "num_layers", dimensions.NumLayers, config.NumHiddenLayers, "num_hidden_layers");
            var init = reader.String("init_weights") switch
            {
                null => PrefixTuningInit.Random,
                "zero" => PrefixTuningInit.Zero,
                var other => throw new CheckpointFormatException($"{path}: init_weights must be null or \"zero\", got \"{other}\".", path, "init_weights"),
            };
            var options = new PrefixTuningOptions
            {
                NumVirtualTokens = dimensions.NumVirtualTokens,
                PrefixProjection = reader.Bool("prefix_projection") ?? false,
                EncoderHiddenSize = reader.Int("encoder_hidden_size"),
                Init = init,
                BaseModelNameOrPath = reader.String("base_model_name_or_path"),
            };
            try
            {
                options.Validate();
            }
            catch (InvalidOptionException ex)
            {
                throw new CheckpointFormatException($"{path}: {ex.Message}", path, null, ex);
            }

            return options;
        });
}
