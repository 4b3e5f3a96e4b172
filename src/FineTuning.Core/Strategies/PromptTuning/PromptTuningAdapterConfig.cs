using FineTuning.Core.IO;
using FineTuning.Core.Models;
using Microsoft.Extensions.Logging;

namespace FineTuning.Core.Strategies.PromptTuning;

/// <summary>
/// PEFT's <c>adapter_config.json</c> for prompt tuning (<c>PromptTuningConfig</c>): <c>peft_type</c>
/// <c>"PROMPT_TUNING"</c>, <c>token_dim</c> = hidden size, <c>num_attention_heads</c> = the query heads,
/// <c>num_layers</c>, <c>num_transformer_submodules</c> 1, <c>prompt_tuning_init</c> (<c>RANDOM</c>, <c>TEXT</c>,
/// <c>SAMPLE_VOCAB</c>), <c>prompt_tuning_init_text</c>, <c>tokenizer_name_or_path</c>, <c>tokenizer_kwargs</c>.
/// </summary>
internal static class PromptTuningAdapterConfig
{
    /// <summary>The <c>peft_type</c>.</summary>
    public const string PeftType = "PROMPT_TUNING";

    /// <summary>The dimensions PEFT's <c>_prepare_prompt_learning_config</c> derives from a model for prompt tuning.</summary>
    public static PromptLearningDimensions Dimensions(int virtualTokens, ModelConfig config) =>
        new(virtualTokens, config.HiddenSize, config.NumHiddenLayers, config.NumAttentionHeads);

    /// <summary>Writes the file, atomically.</summary>
    public static void Write(string directory, PromptTuningOptions options, ModelConfig config)
    {
        var fields = PromptLearningConfig.CommonFields(PeftType, Dimensions(options.NumVirtualTokens, config), options.BaseModelNameOrPath);
        fields["prompt_tuning_init"] = InitName(options.Init);
        fields["prompt_tuning_init_text"] = options.InitText;
        fields["tokenizer_kwargs"] = null;
        fields["tokenizer_name_or_path"] = options.TokenizerNameOrPath;
        PromptLearningConfig.Write(directory, fields);
    }

    /// <summary>Reads the file: the options and the dimensions it records (checked against a model by the strategy).</summary>
    public static (PromptTuningOptions Options, PromptLearningDimensions Dimensions) Read(string directory, ILogger logger) =>
        PromptLearningConfig.Read(directory, PeftType, logger, (reader, path) =>
        {
            var dimensions = PromptLearningConfig.ReadDimensions(reader, path);
            var init = reader.String("prompt_tuning_init") is { } name ? ParseInit(name, path) : PromptTuningInit.Random;
            reader.Get("tokenizer_kwargs");
            var text = reader.String("prompt_tuning_init_text");
            var options = new PromptTuningOptions
            {
                NumVirtualTokens = dimensions.NumVirtualTokens,
                Init = init,
                InitText = init == PromptTuningInit.Text ? text : null,
                TokenizerNameOrPath = reader.String("tokenizer_name_or_path"),
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

            return (options, dimensions);
        });

    /// <summary>PEFT's spelling of an init.</summary>
    public static string InitName(PromptTuningInit init) => init switch
    {
        PromptTuningInit.Random => "RANDOM",
        PromptTuningInit.Text => "TEXT",
        PromptTuningInit.SampleVocab => "SAMPLE_VOCAB",
        _ => throw new ArgumentOutOfRangeException(nameof(init), init, null),
    };

    private static PromptTuningInit ParseInit(string name, string path) => name switch
    {
        "RANDOM" => PromptTuningInit.Random,
        "TEXT" => PromptTuningInit.Text,
        "SAMPLE_VOCAB" => PromptTuningInit.SampleVocab,
        _ => throw new CheckpointFormatException($"{path}: prompt_tuning_init must be \"RANDOM\", \"TEXT\" or \"SAMPLE_VOCAB\", got \"{name}\".", path, "prompt_tuning_init"),
    };
}
