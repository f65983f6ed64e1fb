using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Onnx.Tests;

public sealed class ImportTests
{
    [Fact]
    public void ReadsStories260KHeader()
    {
        var weights = Llama2cCheckpoint.Read(TestModels.Stories260KCheckpoint);
        Assert.Equal(new ModelConfig(64, 172, 5, 8, 4, 512, 512, 1e-5f, 10000f), weights.Config);
        Assert.Null(weights.Classifier);
        Assert.Equal(5, weights.Blocks.Count);
        Assert.Equal(64 * 32, weights.Blocks[0].Wk.Length);
    }

    [Fact]
    public void ImportedModelUsesOnlyStandardOperatorsAndOptimumNames()
    {
        var model = OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile));
        Assert.All(model.Graph.Node, n => Assert.True(string.IsNullOrEmpty(n.Domain), $"{n.OpType} is in domain {n.Domain}"));
        Assert.Contains(model.OpsetImport, o => o.Domain == "" && o.Version >= 17);
        var inputs = model.Graph.Input.Select(i => i.Name).ToList();
        Assert.Equal(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key", "past_key_values.0.value"], inputs[..5]);
        Assert.Equal(3 + 2 * 5, inputs.Count);
        Assert.Equal(["logits", "present.0.key", "present.0.value"], model.Graph.Output.Select(o => o.Name).Take(3));
    }

    [Fact]
    public void SeparateClassifierCheckpointsImportToo()
    {
        // llama2.c writes a negative vocab size when the classifier has its own matrix after the RoPE tables.
        var config = new ModelConfig(16, 24, 2, 4, 2, 300, 32, 1e-5f, 10000f);
        var weights = LlamaWeights.Synthetic(config, 3, sharedClassifier: false);
        var path = Path.Combine(TestModels.NewTempDirectory("ckpt"), "separate.bin");
        WriteCheckpoint(path, weights);
        var read = Llama2cCheckpoint.Read(path);
        Assert.Equal(weights.Classifier, read.Classifier);
        Assert.Equal(weights.Blocks[1].W2, read.Blocks[1].W2);
        Assert.Equal(weights.FinalNorm, read.FinalNorm);
    }

    [Fact]
    public void WrittenCheckpointReadsBackAsTheSameWeightsSharedOrNot()
    {
        foreach (var shared in new[] { true, false })
        {
            var weights = LlamaWeights.Synthetic(TestModels.SmallSyntheticConfig, 5, shared);
            var path = Path.Combine(TestModels.NewTempDirectory("llama2c-write"), "model.bin");
            Llama2cCheckpoint.Write(weights, path);
            var read = Llama2cCheckpoint.Read(path);
            Assert.Equal(weights.Config, read.Config);
            Assert.Equal(weights.TokenEmbedding, read.TokenEmbedding);
            Assert.Equal(weights.FinalNorm, read.FinalNorm);
            Assert.Equal(weights.Classifier, read.Classifier);
            for (var l = 0; l < weights.Blocks.Count; l++)
            {
                var (a, b) = (weights.Blocks[l], read.Blocks[l]);
                Assert.Equal([a.AttentionNorm, a.Wq, a.Wk, a.Wv, a.Wo, a.FfnNorm, a.W1, a.W2, a.W3], [b.AttentionNorm, b.Wq, b.Wk, b.Wv, b.Wo, b.FfnNorm, b.W1, b.W2, b.W3]);
            }
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void TruncatedCheckpointIsRefusedWithSizes()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("ckpt"), "cut.bin");
        File.WriteAllBytes(path, File.ReadAllBytes(TestModels.Stories260KCheckpoint)[..500_000]);
        var error = Assert.Throws<MeshException>(() => Llama2cCheckpoint.Read(path));
        Assert.Equal(MeshErrorCode.InvalidCheckpoint, error.Code);
        Assert.Contains("truncated", error.Message);
        Assert.Contains("1056540", error.Message);
    }

    [Fact]
    public void GarbageHeaderIsRefused()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("ckpt"), "garbage.bin");
        File.WriteAllBytes(path, Enumerable.Range(0, 100).Select(i => (byte)(i * 37)).ToArray());
        Assert.Equal(MeshErrorCode.InvalidCheckpoint, Assert.Throws<MeshException>(() => Llama2cCheckpoint.Read(path)).Code);
    }

    [Fact]
    public void ImportRefusesATokenizerOfAnotherVocabulary()
    {
        var error = Assert.Throws<MeshException>(() => ModelStore.ImportLlama2c(
            TestModels.Stories260KCheckpoint, Path.Combine(TestModels.SmallSynthetic, ModelStore.TokenizerFile), TestModels.NewTempDirectory("import")));
        Assert.Equal(MeshErrorCode.TokenizerMismatch, error.Code);
    }

    [Fact]
    public void NonOnnxFileIsRefused()
    {
        var path = Path.Combine(TestModels.NewTempDirectory("onnx"), "model.onnx");
        File.WriteAllText(path, "this is not a protobuf\n");
        Assert.Equal(MeshErrorCode.InvalidOnnx, Assert.Throws<MeshException>(() => OnnxModelFile.Load(path)).Code);
    }

    private static void WriteCheckpoint(string path, LlamaWeights w)
    {
        var c = w.Config;
        using var writer = new BinaryWriter(File.Create(path));
        foreach (var value in new[] { c.Dim, c.HiddenDim, c.Layers, c.Heads, c.KvHeads, w.Classifier is null ? c.Vocab : -c.Vocab, c.MaxSequence })
            writer.Write(value);
        void Floats(IEnumerable<float> values) { foreach (var v in values) writer.Write(v); }
        Floats(w.TokenEmbedding);
        Floats(w.Blocks.SelectMany(b => b.AttentionNorm));
        Floats(w.Blocks.SelectMany(b => b.Wq));
        Floats(w.Blocks.SelectMany(b => b.Wk));
        Floats(w.Blocks.SelectMany(b => b.Wv));
        Floats(w.Blocks.SelectMany(b => b.Wo));
        Floats(w.Blocks.SelectMany(b => b.FfnNorm));
        Floats(w.Blocks.SelectMany(b => b.W1));
        Floats(w.Blocks.SelectMany(b => b.W2));
        Floats(w.Blocks.SelectMany(b => b.W3));
        Floats(w.FinalNorm);
        Floats(new float[c.MaxSequence * c.HeadSize]);
        if (w.Classifier is not null) Floats(w.Classifier);
    }
}
