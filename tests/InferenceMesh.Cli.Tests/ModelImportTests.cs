using System.Text.Json;
using System.Text.Json.Nodes;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Tests.Shared;
using Family = InferenceMesh.Tests.Shared.HuggingFaceFixtures.Family;

namespace InferenceMesh.Cli.Tests;

public sealed class ModelImportTests
{
    public static TheoryData<string> BadDirectories() => ["no-config", "unknown-architecture", "missing-shard", "wrong-shape", "truncated-header", "rope-yarn", "no-weights", "tokenizer-unsupported"];

    [Theory]
    [MemberData(nameof(BadDirectories))]
    public async Task BadHuggingFaceInputIsOneLineWithTheBadInputCodeAndLeavesTheOutputAsItWas(string kind)
    {
        var parent = TestModels.NewTempDirectory("hf-bad");
        try
        {
            var source = HuggingFaceFixtures.Synthetic(Path.Combine(parent, "source"), Family.Llama3, "BF16", shards: kind == "missing-shard" ? 2 : 1);
            var expected = Break(source, kind);
            var output = Path.Combine(parent, "out");
            Directory.CreateDirectory(output);
            File.WriteAllText(Path.Combine(output, "keep.txt"), "untouched");

            CliTests.AssertOneLineError(await CliTests.Run("model", "import", "--hf", source, "--out", output), expected);
            Assert.Equal(["keep.txt"], Directory.GetFiles(output).Select(Path.GetFileName));
            Assert.Equal(["out", "source"], Directory.GetDirectories(parent).Select(Path.GetFileName).Order());
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public async Task ImportPrintsTheArchitectureSizesAndPeakMemoryAndWritesExternalData()
    {
        var parent = TestModels.NewTempDirectory("hf-cli");
        try
        {
            var source = HuggingFaceFixtures.Synthetic(Path.Combine(parent, "source"), Family.Qwen3, "F16");
            var output = Path.Combine(parent, "out");
            var result = await CliTests.Run("model", "import", "--hf", source, "--out", output, "--dtype", "fp16");
            Assert.True(result.Code == 0, result.Error);
            Assert.Contains("(Qwen3ForCausalLM): dim 64, 2 blocks, 4 heads (2 kv, head size 24)", result.Out);
            Assert.Matches(@"weights \d+ bytes \(fp16\) in [\d.]+ s \([\d.]+ GB/s\); largest tensor 76800 bytes as float32; peak memory \d+ bytes", result.Out);
            Assert.True(File.Exists(Path.Combine(output, ModelStore.ModelDataFile)));
            var description = ModelStore.TryReadDescription(output)!;
            Assert.Equal(24, description.Config.HeadSize);
            Assert.True(description.Config.QkNorm);

            var split = await CliTests.Run("model", "split", Path.Combine(output, ModelStore.ModelFile), "--stages", "2", "--out", Path.Combine(parent, "split"));
            Assert.True(split.Code == 0, split.Error);
            Assert.All(Manifest.Load(Path.Combine(parent, "split")).Stages, s => Assert.Equal(s.File + ".data", s.DataFile));
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    public static TheoryData<bool, int> Repackings() => new() { { true, 1 }, { false, 1 }, { true, 3 }, { false, 3 } };

    [Theory]
    [MemberData(nameof(Repackings))]
    public async Task Stories260KRepackedAsHuggingFacePrintsTheReferenceTextUnsplitAndSplitIntoThree(bool tied, int shards)
    {
        var parent = TestModels.NewTempDirectory("hf-stories");
        try
        {
            var source = HuggingFaceFixtures.Stories260K(Path.Combine(parent, "source"), tied, shards);
            var imported = Path.Combine(parent, "imported");
            var import = await CliTests.Run("model", "import", "--hf", source, "--out", imported);
            Assert.True(import.Code == 0, import.Error);
            var split = Path.Combine(parent, "split");
            var cut = await CliTests.Run("model", "split", Path.Combine(imported, ModelStore.ModelFile), "--stages", "3", "--out", split);
            Assert.True(cut.Code == 0, cut.Error);
            foreach (var args in new[] { new[] { "--model", imported }, ["--model", imported, "--stages", "3"], ["--model", split], ["--model", imported, "--executor", "ilgpu"] })
            {
                var result = await CliTests.Run(["generate", .. args, "--prompt", "Once upon a time", "--steps", "256", "--temperature", "0"]);
                Assert.True(result.Code == 0, result.Error);
                Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
            }
        }
        finally
        {
            Directory.Delete(parent, recursive: true);
        }
    }

    [Fact]
    public async Task HfAndLlama2cOptionsTogetherAreRefused() =>
        CliTests.AssertOneLineError(await CliTests.Run("model", "import", "--hf", "/tmp", "--llama2c", "x.bin", "--tokenizer", "t.bin", "--out", "/tmp/x"), "not both");

    /// <summary>Damages a valid checkpoint directory one way; returns a phrase the error must contain.</summary>
    private static string Break(string directory, string kind)
    {
        var configPath = Path.Combine(directory, "config.json");
        JsonObject Config() => JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        void Save(JsonObject config) => File.WriteAllText(configPath, config.ToJsonString());
        switch (kind)
        {
            case "no-config":
                File.Delete(configPath);
                return "has no config.json";
            case "unknown-architecture":
                var unknown = Config();
                unknown["architectures"] = new JsonArray("GPT2LMHeadModel");
                Save(unknown);
                return "architecture GPT2LMHeadModel is not supported; supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM";
            case "missing-shard":
                File.Delete(Path.Combine(directory, "model-00002-of-00002.safetensors"));
                return "shard model-00002-of-00002.safetensors is listed in model.safetensors.index.json but absent";
            case "wrong-shape":
                var wider = Config();
                wider["intermediate_size"] = 100;
                Save(wider);
                return "tensor model.layers.0.mlp.gate_proj.weight in model.safetensors has shape [96, 64]; config.json implies [100, 64]";
            case "truncated-header":
                var path = Path.Combine(directory, "model.safetensors");
                var bytes = File.ReadAllBytes(path);
                File.WriteAllBytes(path, bytes[..40]);
                return "is truncated";
            case "rope-yarn":
                var yarn = Config();
                yarn["rope_scaling"] = JsonNode.Parse("""{"rope_type": "yarn", "factor": 4.0}""");
                Save(yarn);
                return "rope_scaling type yarn is not supported; supported: llama3";
            case "no-weights":
                File.Delete(Path.Combine(directory, "model.safetensors"));
                return "has neither model.safetensors nor model.safetensors.index.json";
            case "tokenizer-unsupported":
                File.WriteAllText(Path.Combine(directory, "tokenizer.json"), """{"version": "1.0", "model": {"type": "WordPiece", "vocab": {"a": 0}}}""");
                return "WordPiece";
            default:
                throw new ArgumentException(kind);
        }
    }
}
