using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace FineTuning.Core.Models;

/// <summary>
/// The architecture of a LLaMA-family model, read from and written to Hugging Face's <c>config.json</c>.
/// Immutable; <see cref="Validate"/> rejects inconsistent values with the offending field named.
/// </summary>
public sealed record ModelConfig
{
    /// <summary>The architecture family (<c>model_type</c>).</summary>
    public ModelFamily Family { get; init; } = ModelFamily.Llama;

    /// <summary>Vocabulary size (<c>vocab_size</c>).</summary>
    public int VocabSize { get; init; } = 32000;

    /// <summary>Width of the residual stream (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; init; } = 4096;

    /// <summary>Width of the SwiGLU MLP (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; init; } = 11008;

    /// <summary>Number of decoder blocks (<c>num_hidden_layers</c>).</summary>
    public int NumHiddenLayers { get; init; } = 32;

    /// <summary>Number of query heads (<c>num_attention_heads</c>).</summary>
    public int NumAttentionHeads { get; init; } = 32;

    /// <summary>Number of key/value heads (<c>num_key_value_heads</c>); fewer than query heads means grouped-query attention.</summary>
    public int NumKeyValueHeads { get; init; } = 32;

    /// <summary>Per-head width (<c>head_dim</c>); <c>null</c> means <c>hidden_size / num_attention_heads</c>.</summary>
    public int? ExplicitHeadDim { get; init; }

    /// <summary>The per-head width actually used.</summary>
    public int HeadDim => ExplicitHeadDim ?? HiddenSize / NumAttentionHeads;

    /// <summary>Epsilon of every RMSNorm (<c>rms_norm_eps</c>).</summary>
    public double RmsNormEps { get; init; } = 1e-6;

    /// <summary>Rotary base frequency (<c>rope_theta</c>).</summary>
    public double RopeTheta { get; init; } = 10000.0;

    /// <summary>Rotary frequency scaling (<c>rope_scaling</c>); <c>null</c> for none.</summary>
    public RopeScaling? RopeScaling { get; init; }

    /// <summary>Longest sequence the positions are prepared for (<c>max_position_embeddings</c>).</summary>
    public int MaxPositionEmbeddings { get; init; } = 4096;

    /// <summary>Whether the LM head shares the input embedding matrix (<c>tie_word_embeddings</c>).</summary>
    public bool TieWordEmbeddings { get; init; }

    /// <summary>Bias on the attention projections (<c>attention_bias</c>). Qwen2 always has q/k/v biases and no o_proj bias.</summary>
    public bool AttentionBias { get; init; }

    /// <summary>Bias on the MLP projections (<c>mlp_bias</c>).</summary>
    public bool MlpBias { get; init; }

    /// <summary>Sliding attention window in tokens (<c>sliding_window</c> when in use); <c>null</c> for full attention.</summary>
    public int? SlidingWindow { get; init; }

    /// <summary>The dtype the checkpoint was saved in (<c>torch_dtype</c>): <c>float32</c>, <c>bfloat16</c> or <c>float16</c>.</summary>
    public string TorchDtype { get; init; } = "float32";

    /// <summary>Beginning-of-sequence token id (<c>bos_token_id</c>).</summary>
    public int? BosTokenId { get; init; }

    /// <summary>End-of-sequence token ids (<c>eos_token_id</c>, a number or a list).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];

    /// <summary>Padding token id (<c>pad_token_id</c>).</summary>
    public int? PadTokenId { get; init; }

    /// <summary>The Hugging Face <c>model_type</c> string of <see cref="Family"/>.</summary>
    public string ModelType => Family switch
    {
        ModelFamily.Llama => "llama",
        ModelFamily.Mistral => "mistral",
        ModelFamily.Qwen2 => "qwen2",
        _ => throw new InvalidOperationException($"Unknown family {Family}."),
    };

    /// <summary>Whether q/k/v projections carry a bias.</summary>
    public bool QkvBias => AttentionBias || Family == ModelFamily.Qwen2;

    /// <summary>Whether o_proj carries a bias.</summary>
    public bool OutputProjectionBias => AttentionBias && Family != ModelFamily.Qwen2;

    /// <summary>The TorchSharp scalar type of <see cref="TorchDtype"/>.</summary>
    public torch.ScalarType DefaultScalarType => ParseDtype(TorchDtype, "torch_dtype", null);

    /// <summary>Reads and validates a Hugging Face <c>config.json</c>.</summary>
    /// <param name="path">Path of the file.</param>
    /// <exception cref="ModelConfigException">A field is missing, of the wrong type, unsupported or inconsistent.</exception>
    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Model config not found: {path}", path);
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses and validates the text of a Hugging Face <c>config.json</c>.</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="sourcePath">Where the text came from, for error messages.</param>
    /// <exception cref="ModelConfigException">A field is missing, of the wrong type, unsupported or inconsistent.</exception>
    public static ModelConfig Parse(string json, string? sourcePath = null)
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException("(root)", $"not valid JSON: {e.Message}", sourcePath);
        }

        if (node is not JsonObject root)
        {
            throw new ModelConfigException("(root)", "expected a JSON object", sourcePath);
        }

        var reader = new FieldReader(root, sourcePath);
        var modelType = reader.RequiredString("model_type");
        var family = modelType switch
        {
            "llama" => ModelFamily.Llama,
            "mistral" => ModelFamily.Mistral,
            "qwen2" => ModelFamily.Qwen2,
            _ => throw new ModelConfigException("model_type", $"unsupported model type '{modelType}'; supported: llama, mistral, qwen2", sourcePath),
        };

        int? slidingWindow = family switch
        {
            ModelFamily.Mistral => reader.OptionalInt("sliding_window"),
            ModelFamily.Qwen2 when reader.OptionalBool("use_sliding_window") == true => reader.OptionalInt("sliding_window"),
            _ => null,
        };

        var heads = reader.RequiredInt("num_attention_heads");
        var config = new ModelConfig
        {
            Family = family,
            VocabSize = reader.RequiredInt("vocab_size"),
            HiddenSize = reader.RequiredInt("hidden_size"),
            IntermediateSize = reader.RequiredInt("intermediate_size"),
            NumHiddenLayers = reader.RequiredInt("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = reader.OptionalInt("num_key_value_heads") ?? heads,
            ExplicitHeadDim = reader.OptionalInt("head_dim"),
            RmsNormEps = reader.OptionalDouble("rms_norm_eps") ?? 1e-6,
            RopeTheta = reader.OptionalDouble("rope_theta") ?? 10000.0,
            RopeScaling = ParseRopeScaling(root["rope_scaling"], sourcePath),
            MaxPositionEmbeddings = reader.OptionalInt("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = reader.OptionalBool("tie_word_embeddings") ?? false,
            AttentionBias = reader.OptionalBool("attention_bias") ?? false,
            MlpBias = reader.OptionalBool("mlp_bias") ?? false,
            SlidingWindow = slidingWindow,
            TorchDtype = reader.OptionalString("torch_dtype") ?? reader.OptionalString("dtype") ?? "float32",
            BosTokenId = reader.OptionalInt("bos_token_id"),
            EosTokenIds = reader.OptionalIntOrList("eos_token_id"),
            PadTokenId = reader.OptionalInt("pad_token_id"),
        };
        config.Validate(sourcePath);
        return config;
    }

    /// <summary>Checks that the values are consistent.</summary>
    /// <param name="sourcePath">The file the config came from, for error messages.</param>
    /// <exception cref="ModelConfigException">The first inconsistent field.</exception>
    public void Validate(string? sourcePath = null)
    {
        void Positive(int value, string field)
        {
            if (value <= 0)
            {
                throw new ModelConfigException(field, $"must be positive, got {value}", sourcePath);
            }
        }

        Positive(VocabSize, "vocab_size");
        Positive(HiddenSize, "hidden_size");
        Positive(IntermediateSize, "intermediate_size");
        Positive(NumHiddenLayers, "num_hidden_layers");
        Positive(NumAttentionHeads, "num_attention_heads");
        Positive(NumKeyValueHeads, "num_key_value_heads");
        Positive(MaxPositionEmbeddings, "max_position_embeddings");
        if (ExplicitHeadDim is { } headDim)
        {
            Positive(headDim, "head_dim");
        }
        else if (HiddenSize % NumAttentionHeads != 0)
        {
            throw new ModelConfigException("num_attention_heads", $"{NumAttentionHeads} heads do not divide hidden_size {HiddenSize} (and no head_dim is given)", sourcePath);
        }

        if (HeadDim % 2 != 0)
        {
            throw new ModelConfigException("head_dim", $"rotary embeddings need an even head dimension, got {HeadDim}", sourcePath);
        }

        if (NumAttentionHeads % NumKeyValueHeads != 0)
        {
            throw new ModelConfigException("num_key_value_heads", $"{NumKeyValueHeads} key/value heads do not divide num_attention_heads {NumAttentionHeads}", sourcePath);
        }

        if (!(RmsNormEps > 0))
        {
            throw new ModelConfigException("rms_norm_eps", $"must be positive, got {RmsNormEps}", sourcePath);
        }

        if (!(RopeTheta > 0))
        {
            throw new ModelConfigException("rope_theta", $"must be positive, got {RopeTheta}", sourcePath);
        }

        if (SlidingWindow is <= 0)
        {
            throw new ModelConfigException("sliding_window", $"must be positive, got {SlidingWindow}", sourcePath);
        }

        if (RopeScaling is { } scaling)
        {
            if (!RopeScaling.SupportedTypes.Contains(scaling.RopeType))
            {
                throw new ModelConfigException("rope_scaling.rope_type", $"unsupported type '{scaling.RopeType}'; supported: {string.Join(", ", RopeScaling.SupportedTypes)}", sourcePath);
            }

            if (!(scaling.Factor > 0))
            {
                throw new ModelConfigException("rope_scaling.factor", $"must be positive, got {scaling.Factor}", sourcePath);
            }

            if (scaling.RopeType == "llama3" && !(scaling.HighFreqFactor > scaling.LowFreqFactor))
            {
                throw new ModelConfigException("rope_scaling.high_freq_factor", $"must exceed low_freq_factor ({scaling.LowFreqFactor}), got {scaling.HighFreqFactor}", sourcePath);
            }
        }

        foreach (var (id, field) in EosTokenIds.Select(e => (e, "eos_token_id")).Append((BosTokenId ?? 0, "bos_token_id")).Append((PadTokenId ?? 0, "pad_token_id")))
        {
            if (id < 0 || id >= VocabSize)
            {
                throw new ModelConfigException(field, $"token id {id} is outside the vocabulary of {VocabSize}", sourcePath);
            }
        }

        ParseDtype(TorchDtype, "torch_dtype", sourcePath);
    }

    /// <summary>Writes the configuration as a Hugging Face <c>config.json</c> object.</summary>
    /// <returns>Indented JSON text that <see cref="Parse"/> and Hugging Face Transformers both read.</returns>
    public string ToJson()
    {
        var root = new JsonObject
        {
            ["architectures"] = new JsonArray(Family switch
            {
                ModelFamily.Mistral => "MistralForCausalLM",
                ModelFamily.Qwen2 => "Qwen2ForCausalLM",
                _ => "LlamaForCausalLM",
            }),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["hidden_act"] = "silu",
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["torch_dtype"] = TorchDtype,
        };
        if (ExplicitHeadDim is { } headDim)
        {
            root["head_dim"] = headDim;
        }

        if (Family != ModelFamily.Qwen2)
        {
            root["attention_bias"] = AttentionBias;
            root["mlp_bias"] = MlpBias;
        }

        if (RopeScaling is { } s)
        {
            var scaling = new JsonObject { ["rope_type"] = s.RopeType, ["factor"] = s.Factor };
            if (s.RopeType == "llama3")
            {
                scaling["low_freq_factor"] = s.LowFreqFactor;
                scaling["high_freq_factor"] = s.HighFreqFactor;
                scaling["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings;
            }

            root["rope_scaling"] = scaling;
        }
        else
        {
            root["rope_scaling"] = null;
        }

        if (SlidingWindow is { } window)
        {
            root["sliding_window"] = window;
            if (Family == ModelFamily.Qwen2)
            {
                root["use_sliding_window"] = true;
            }
        }

        if (BosTokenId is { } bos)
        {
            root["bos_token_id"] = bos;
        }

        if (EosTokenIds.Count == 1)
        {
            root["eos_token_id"] = EosTokenIds[0];
        }
        else if (EosTokenIds.Count > 1)
        {
            root["eos_token_id"] = new JsonArray(EosTokenIds.Select(e => (JsonNode?)e).ToArray());
        }

        if (PadTokenId is { } pad)
        {
            root["pad_token_id"] = pad;
        }

        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Maps a Hugging Face dtype name to a TorchSharp scalar type.</summary>
    /// <param name="name"><c>float32</c>, <c>bfloat16</c> or <c>float16</c> (also <c>fp32</c>, <c>bf16</c>, <c>fp16</c>).</param>
    /// <returns>The scalar type.</returns>
    /// <exception cref="ModelConfigException">The name is not one of the supported dtypes.</exception>
    public static torch.ScalarType ParseDtype(string name) => ParseDtype(name, "dtype", null);

    /// <summary>The Hugging Face <c>torch_dtype</c> name of a model dtype.</summary>
    /// <param name="dtype">Float32, BFloat16 or Float16.</param>
    /// <returns><c>float32</c>, <c>bfloat16</c> or <c>float16</c>.</returns>
    /// <exception cref="ArgumentException">Not one of the three model dtypes.</exception>
    public static string DtypeName(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Float32 => "float32",
        torch.ScalarType.BFloat16 => "bfloat16",
        torch.ScalarType.Float16 => "float16",
        _ => throw new ArgumentException($"Model dtype must be Float32, BFloat16 or Float16, got {dtype}.", nameof(dtype)),
    };

    private static torch.ScalarType ParseDtype(string name, string field, string? sourcePath) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" or "float" => torch.ScalarType.Float32,
        "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
        "float16" or "fp16" or "half" => torch.ScalarType.Float16,
        _ => throw new ModelConfigException(field, $"unsupported dtype '{name}'; expected float32, bfloat16 or float16", sourcePath),
    };

    private static RopeScaling? ParseRopeScaling(JsonNode? node, string? sourcePath)
    {
        if (node is null)
        {
            return null;
        }

        if (node is not JsonObject obj)
        {
            throw new ModelConfigException("rope_scaling", "expected an object or null", sourcePath);
        }

        var reader = new FieldReader(obj, sourcePath, "rope_scaling.");
        var type = reader.OptionalString("rope_type") ?? reader.OptionalString("type")
            ?? throw new ModelConfigException("rope_scaling.rope_type", "missing", sourcePath);
        return new RopeScaling(
            type,
            reader.OptionalDouble("factor") ?? 1.0,
            reader.OptionalDouble("low_freq_factor") ?? 1.0,
            reader.OptionalDouble("high_freq_factor") ?? 4.0,
            reader.OptionalInt("original_max_position_embeddings") ?? 8192);
    }

    private sealed class FieldReader(JsonObject obj, string? sourcePath, string prefix = "")
    {
        public string RequiredString(string name) => OptionalString(name) ?? throw Missing(name);

        public int RequiredInt(string name) => OptionalInt(name) ?? throw Missing(name);

        public string? OptionalString(string name) => Get(name) switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out string? s) => s,
            _ => throw WrongType(name, "a string"),
        };

        public int? OptionalInt(string name)
        {
            var node = Get(name);
            if (node is null)
            {
                return null;
            }

            if (node is JsonValue v && v.TryGetValue(out double d) && d == Math.Floor(d) && d is >= int.MinValue and <= int.MaxValue)
            {
                return (int)d;
            }

            throw WrongType(name, "an integer");
        }

        public double? OptionalDouble(string name) => Get(name) switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out double d) => d,
            _ => throw WrongType(name, "a number"),
        };

        public bool? OptionalBool(string name) => Get(name) switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out bool b) => b,
            _ => throw WrongType(name, "true or false"),
        };

        public IReadOnlyList<int> OptionalIntOrList(string name)
        {
            var node = Get(name);
            if (node is JsonArray array)
            {
                return array.Select((item, i) => item is JsonValue v && v.TryGetValue(out int x)
                    ? x
                    : throw WrongType($"{name}[{i}]", "an integer")).ToArray();
            }

            return OptionalInt(name) is { } single ? [single] : [];
        }

        private JsonNode? Get(string name) => obj.TryGetPropertyValue(name, out var node) ? node : null;

        private ModelConfigException Missing(string name) => new(prefix + name, "missing", sourcePath);

        private ModelConfigException WrongType(string name, string expected) =>
            new(prefix + name, $"expected {expected}, got {Get(name)?.ToJsonString() ?? "null"}", sourcePath);
    }

    /// <summary>Formats the config as the one-paragraph summary printed by <c>finetune inspect</c>.</summary>
    /// <returns>Multi-line human-readable text.</returns>
    public string Describe() => string.Create(CultureInfo.InvariantCulture,
        $"""
        model_type: {ModelType}
        layers: {NumHiddenLayers}, hidden: {HiddenSize}, intermediate: {IntermediateSize}
        heads: {NumAttentionHeads} (key/value heads: {NumKeyValueHeads}, head_dim: {HeadDim})
        vocab: {VocabSize}, max positions: {MaxPositionEmbeddings}, tied embeddings: {(TieWordEmbeddings ? "yes" : "no")}
        rope: theta {RopeTheta}, scaling {RopeScaling?.RopeType ?? "none"}; rms_norm_eps {RmsNormEps}; dtype {TorchDtype}
        """);
}
