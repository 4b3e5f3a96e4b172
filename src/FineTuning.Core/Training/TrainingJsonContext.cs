using System.Text.Json.Serialization;

namespace FineTuning.Core.Training;

/// <summary>Source-generated JSON for the trainer's files (snake_case, NaN and infinities allowed).</summary>
[JsonSourceGenerationOptions(
    WriteIndented = true,
    PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(TrainerState))]
[JsonSerializable(typeof(TrainingResult))]
internal sealed partial class TrainingJsonContext : JsonSerializerContext;
