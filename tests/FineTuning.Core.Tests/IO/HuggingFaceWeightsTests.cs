using System.Text.Json;
using FineTuning.Core.IO;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace FineTuning.Core.Tests.IO;

public sealed class HuggingFaceWeightsTests : IDisposable
{
    private readonly TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static Dictionary<string, Tensor> State(nn.Module model) =>
        HuggingFaceWeights.CollectTensors(model).ToDictionary(p => p.Key, p => p.Value);

    private static void AssertSameWeights(nn.Module expected, nn.Module actual)
    {
        var e = State(expected);
        var a = State(actual);
        Assert.Equal(e.Keys.Order(), a.Keys.Order());
        foreach (var (name, tensor) in e)
        {
            TestTensors.AssertBitEqual(tensor, a[name], name);
        }
    }

    [Fact]
    public void TargetSet_IsParametersAndPersistentBuffers_WithTiedWeightsListedOnce()
    {
        using var tied = new TinyLm(tied: true);
        var names = State(tied).Keys.ToArray();

        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.1.self_attn.q_proj.bias", names);
        Assert.Contains("model.layers.0.mlp.up_proj.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.Contains("model.step_counts", names);
        Assert.DoesNotContain("lm_head.weight", names);
        Assert.DoesNotContain("model.inv_freq", names);

        using var untied = new TinyLm(tied: false);
        Assert.Contains("lm_head.weight", State(untied).Keys);
    }

    [Fact]
    public void SaveThenLoad_SingleFile_IsBitExact()
    {
        using var source = new TinyLm();
        var saved = HuggingFaceWeights.Save(source, _dir.Path);

        Assert.Equal([_dir.File(HuggingFaceWeights.SingleFileName)], saved.WeightFiles);
        Assert.Null(saved.IndexFile);
        Assert.Equal(State(source).Count, saved.TensorsWritten);

        using var target = new TinyLm();
        var loaded = HuggingFaceWeights.Load(target, _dir.Path);

        AssertSameWeights(source, target);
        Assert.Equal(saved.TensorsWritten, loaded.TensorsLoaded);
        Assert.Equal(saved.TotalBytes, loaded.BytesRead);
        Assert.Equal(saved.WeightFiles, loaded.FilesRead);
        Assert.Empty(loaded.IgnoredUnexpectedTensors);
    }

    [Fact]
    public void ShardedSave_WritesAWellFormedIndex_AndLoadsBackBitExact()
    {
        using var source = new TinyLm();
        var saved = HuggingFaceWeights.Save(source, _dir.Path, new WeightSaveOptions { MaxShardBytes = 600 });

        Assert.True(saved.WeightFiles.Count >= 3, $"expected several shards, got {saved.WeightFiles.Count}");
        int n = saved.WeightFiles.Count;
        Assert.Equal(
            Enumerable.Range(1, n).Select(i => _dir.File($"model-{i:D5}-of-{n:D5}.safetensors")),
            saved.WeightFiles);
        Assert.False(File.Exists(_dir.File(HuggingFaceWeights.SingleFileName)));
        Assert.Equal(_dir.File(HuggingFaceWeights.IndexFileName), saved.IndexFile);

        using (var index = JsonDocument.Parse(File.ReadAllText(saved.IndexFile!)))
        {
            long expectedTotal = State(source).Values.Sum(t => t.numel() * t.element_size());
            Assert.Equal(expectedTotal, index.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
            Assert.Equal(expectedTotal, saved.TotalBytes);

            var weightMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            Assert.Equal(State(source).Keys.Order(StringComparer.Ordinal), weightMap.Keys);
            foreach (var (name, file) in weightMap)
            {
                using var shard = new SafetensorsReader(_dir.File(file));
                Assert.True(shard.Contains(name), $"{file} lacks {name}");
            }

            Assert.Equal(n, weightMap.Values.Distinct().Count());
        }

        using var target = new TinyLm();
        var loaded = HuggingFaceWeights.Load(target, _dir.Path);
        AssertSameWeights(source, target);
        Assert.Equal(n, loaded.FilesRead.Count);

        // Saving unsharded afterwards removes the shards and the index, so the new weights are the ones found.
        HuggingFaceWeights.Save(source, _dir.Path);
        Assert.Equal([HuggingFaceWeights.SingleFileName], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void Bf16File_LoadsIntoFp32Model_AsTheWidenedValues()
    {
        using var source = new TinyLm();
        var saved = HuggingFaceWeights.Save(source, _dir.Path, new WeightSaveOptions { DType = ScalarType.BFloat16 });

        using (var reader = new SafetensorsReader(saved.WeightFiles[0]))
        {
            Assert.Equal("BF16", reader.GetInfo("model.norm.weight").DType);
            Assert.Equal("I64", reader.GetInfo("model.step_counts").DType);
        }

        using var target = new TinyLm();
        HuggingFaceWeights.Load(target, _dir.Path);

        var expected = State(source);
        foreach (var (name, tensor) in State(target))
        {
            Assert.Equal(expected[name].dtype, tensor.dtype);
            using var widened = expected[name].dtype == ScalarType.Float32
                ? expected[name].to_type(ScalarType.BFloat16).to_type(ScalarType.Float32)
                : expected[name].clone();
            TestTensors.AssertBitEqual(widened, tensor, name);
        }
    }

    [Fact]
    public void Fp32File_LoadsIntoBf16Model()
    {
        using var source = new TinyLm();
        HuggingFaceWeights.Save(source, _dir.Path);

        using var target = new TinyLm(dtype: ScalarType.BFloat16);
        HuggingFaceWeights.Load(target, _dir.Path);

        var expected = State(source);
        foreach (var (name, tensor) in State(target))
        {
            using var narrowed = expected[name].to_type(tensor.dtype);
            TestTensors.AssertBitEqual(narrowed, tensor, name);
        }
    }

    [Fact]
    public void TiedModel_RoundTrips_AndLmHeadFollowsTheEmbedding()
    {
        using var source = new TinyLm(tied: true);
        HuggingFaceWeights.Save(source, _dir.Path);

        using var target = new TinyLm(tied: true);
        HuggingFaceWeights.Load(target, _dir.Path);
        AssertSameWeights(source, target);

        using var input = torch.tensor(new long[] { 1, 2, 3 });
        using var expectedLogits = source.call(input);
        using var actualLogits = target.call(input);
        TestTensors.AssertBitEqual(expectedLogits, actualLogits);
    }

    [Fact]
    public void LmHeadInFile_ForTiedModel_IsUnexpectedUnlessIgnored()
    {
        using var untied = new TinyLm(tied: false);
        string file = HuggingFaceWeights.Save(untied, _dir.Path).WeightFiles[0];

        using var tied = new TinyLm(tied: true);
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(tied, _dir.Path));
        Assert.Equal("lm_head.weight", ex.TensorName);
        Assert.Equal(file, ex.FilePath);
        Assert.Contains("'lm_head.weight'", ex.Message);
        Assert.Contains(file, ex.Message);

        var result = HuggingFaceWeights.Load(tied, _dir.Path, new WeightLoadOptions { IgnoredUnexpectedNames = ["lm_head.weight"] });
        Assert.Equal(["lm_head.weight"], result.IgnoredUnexpectedTensors);
    }

    [Fact]
    public void RotaryInvFreq_IsIgnoredByDefault()
    {
        using var source = new TinyLm();
        using var invFreq = torch.ones(4);
        var tensors = State(source).Append(new("model.layers.0.self_attn.rotary_emb.inv_freq", invFreq));
        SafetensorsWriter.Write(_dir.File(HuggingFaceWeights.SingleFileName), tensors);

        using var target = new TinyLm();
        var result = HuggingFaceWeights.Load(target, _dir.Path);
        Assert.Equal(["model.layers.0.self_attn.rotary_emb.inv_freq"], result.IgnoredUnexpectedTensors);
        AssertSameWeights(source, target);

        // With the default suffixes cleared, the same tensor is an error.
        var strict = new WeightLoadOptions { IgnoredUnexpectedSuffixes = [] };
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path, strict));
        Assert.Equal("model.layers.0.self_attn.rotary_emb.inv_freq", ex.TensorName);
    }

    [Fact]
    public void MissingTensor_NamesTheTensorAndTheFilesSearched_AndChangesNothing()
    {
        using var source = new TinyLm();
        string path = _dir.File(HuggingFaceWeights.SingleFileName);
        SafetensorsWriter.Write(path, State(source).Where(p => p.Key != "model.norm.weight"));

        using var target = new TinyLm();
        byte[] before = TestTensors.Bytes(State(target)["model.embed_tokens.weight"]);
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Equal("model.norm.weight", ex.TensorName);
        Assert.Contains("'model.norm.weight'", ex.Message);
        Assert.Contains("missing", ex.Message);
        Assert.Contains(path, ex.Message);
        Assert.Equal(before, TestTensors.Bytes(State(target)["model.embed_tokens.weight"]));

        var result = HuggingFaceWeights.Load(target, _dir.Path, new WeightLoadOptions { IgnoreMissing = n => n == "model.norm.weight" });
        Assert.Equal(["model.norm.weight"], result.IgnoredMissingTensors);
    }

    [Fact]
    public void WrongShape_NamesFileTensorAndBothShapes()
    {
        using var source = new TinyLm();
        using var wrong = torch.zeros(3, 3);
        string path = _dir.File(HuggingFaceWeights.SingleFileName);
        SafetensorsWriter.Write(path, State(source).Select(p => p.Key == "model.layers.1.mlp.up_proj.weight" ? new(p.Key, wrong) : p));

        using var target = new TinyLm();
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Equal("model.layers.1.mlp.up_proj.weight", ex.TensorName);
        Assert.Contains(path, ex.Message);
        Assert.Contains("[3, 3]", ex.Message);
        Assert.Contains("[8, 8]", ex.Message);
    }

    [Fact]
    public void MissingShard_IsNamed()
    {
        using var source = new TinyLm();
        var saved = HuggingFaceWeights.Save(source, _dir.Path, new WeightSaveOptions { MaxShardBytes = 600 });
        File.Delete(saved.WeightFiles[1]);

        using var target = new TinyLm();
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Contains(Path.GetFileName(saved.WeightFiles[1]), ex.Message);
        Assert.Contains("does not exist", ex.Message);
        Assert.Equal(saved.IndexFile, ex.FilePath);
    }

    [Fact]
    public void TensorListedInIndexButAbsentFromShard_IsNamed()
    {
        using var source = new TinyLm();
        var all = State(source);
        SafetensorsWriter.Write(_dir.File("model-00001-of-00001.safetensors"), all.Where(p => p.Key != "model.norm.weight"));
        var weightMap = all.Keys.ToDictionary(k => k, _ => "model-00001-of-00001.safetensors");
        File.WriteAllText(_dir.File(HuggingFaceWeights.IndexFileName), JsonSerializer.Serialize(new { metadata = new { total_size = 0 }, weight_map = weightMap }));

        using var target = new TinyLm();
        var ex = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Equal("model.norm.weight", ex.TensorName);
        Assert.Contains("model-00001-of-00001.safetensors", ex.Message);
    }

    [Fact]
    public void MalformedIndex_And_EmptyFolder_AreClearErrors()
    {
        using var target = new TinyLm();
        var none = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Contains(HuggingFaceWeights.IndexFileName, none.Message);

        File.WriteAllText(_dir.File(HuggingFaceWeights.IndexFileName), "{\"weight_map\": {\"a\": \"../evil.safetensors\"}}");
        var traversal = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Equal("a", traversal.TensorName);

        File.WriteAllText(_dir.File(HuggingFaceWeights.IndexFileName), "{\"weight_map\": ");
        var malformed = Assert.Throws<CheckpointFormatException>(() => HuggingFaceWeights.Load(target, _dir.Path));
        Assert.Contains("not valid JSON", malformed.Message);
    }

    [Fact]
    public void Load_IntoMetaModel_IsAClearError()
    {
        using var source = new TinyLm();
        HuggingFaceWeights.Save(source, _dir.Path);

        using var meta = new TinyLm(device: torch.META);
        var ex = Assert.Throws<ArgumentException>(() => HuggingFaceWeights.Load(meta, _dir.Path));
        Assert.Contains("meta device", ex.Message);
        Assert.Contains("model.embed_tokens.weight", ex.Message);
    }

    [Fact]
    public void Options_AreValidated()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightSaveOptions { MaxShardBytes = 0 });
        Assert.Throws<ArgumentOutOfRangeException>(() => new WeightSaveOptions { DType = ScalarType.Int32 });
        Assert.Throws<ArgumentNullException>(() => new WeightLoadOptions { IgnoredUnexpectedNames = null! });
        Assert.Throws<ArgumentException>(() => new WeightLoadOptions { IgnoredUnexpectedSuffixes = [""] });
        Assert.True(WeightLoadOptions.Default.IsIgnoredUnexpected("model.layers.3.self_attn.rotary_emb.inv_freq"));
        Assert.False(WeightLoadOptions.Default.IsIgnoredUnexpected("lm_head.weight"));
        Assert.True(new WeightLoadOptions { IgnoreUnexpected = n => n.StartsWith("extra.") }.IsIgnoredUnexpected("extra.x"));
    }

    [Fact]
    public void Save_CreatesTheDirectory_AndWritesCustomMetadata()
    {
        string nested = Path.Combine(_dir.Path, "a", "b");
        using var source = new TinyLm();
        var saved = HuggingFaceWeights.Save(source, nested, new WeightSaveOptions { Metadata = new Dictionary<string, string> { ["library"] = "FineTuning.Core" } });

        using var reader = new SafetensorsReader(saved.WeightFiles[0]);
        Assert.Equal("FineTuning.Core", reader.Metadata["library"]);
        Assert.Equal("pt", reader.Metadata["format"]);
    }
}
