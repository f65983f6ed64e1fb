using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Quantization;
using InferenceMesh.Tests.Shared;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Xunit.Abstractions;

namespace InferenceMesh.Compute.Tests;

public sealed class QuantizationTests(ITestOutputHelper output)
{
    // Bounds of the held-out perplexity test over what was measured (2026-11-30: fp32 5.792, int8 5.794, int4 6.106).
    private const double PerplexityCeiling = 20;
    private const double Int8PerplexityRatio = 1.02;
    private const double Int4PerplexityRatio = 1.2;

    /// <summary>Text prompts of the quality comparison (none of them is the reference prompt alone).</summary>
    private static readonly string[] Prompts =
    [
        "Once upon a time", "Lily and Tom went to the park", "The little dog was sad because", "One day, a big bird",
        "Mom said", "The sun was hot and", "Tim had a red ball.", "There was a tree",
    ];

    [Theory]
    [InlineData(4)]
    [InlineData(8)]
    public void MatMulNBitsComputesTheDequantizedProductWhenKIsNotAMultipleOfTheBlock(int bits)
    {
        // K = 172 is stories260K's FFN width: six blocks of 32, the last holding 12 weights and 20 zeros of padding.
        const int k = 172, n = 24, blockSize = 32;
        var random = new Random(bits);
        var weights = Enumerable.Range(0, n).Select(_ => Enumerable.Range(0, k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray()).ToArray();
        var input = Enumerable.Range(0, k).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        var blocks = BlockQuantizer.Blocks(k, blockSize);
        var blob = BlockQuantizer.BlobBytes(blockSize, bits);
        var zeroPointBytes = BlockQuantizer.ZeroPointBytes(k, blockSize, bits);
        var codes = new byte[n * blocks * blob];
        var scales = new float[n * blocks];
        var zeroPoints = new byte[n * zeroPointBytes];
        var expected = new float[n];
        for (var column = 0; column < n; column++)
        {
            BlockQuantizer.QuantizeColumn(weights[column], bits, blockSize, codes.AsSpan(column * blocks * blob, blocks * blob),
                scales.AsSpan(column * blocks, blocks), zeroPoints.AsSpan(column * zeroPointBytes, zeroPointBytes));
            var restored = BlockQuantizer.DequantizeColumn(k, bits, blockSize, codes.AsSpan(column * blocks * blob, blocks * blob),
                scales.AsSpan(column * blocks, blocks), zeroPoints.AsSpan(column * zeroPointBytes, zeroPointBytes));
            var step = scales.AsSpan(column * blocks, blocks).ToArray().Max();
            Assert.All(restored.Zip(weights[column]), pair => Assert.True(Math.Abs(pair.First - pair.Second) <= step / 2 + 1e-6f, $"{pair.First} for {pair.Second}"));
            for (var i = 0; i < k; i++) expected[column] += input[i] * restored[i];
        }

        var g = new OnnxGraphBuilder("matmulnbits");
        g.Input("x", DType.Float32, "1", k.ToString());
        g.Output("y", DType.Float32, "1", n.ToString());
        string Raw(string stem, global::Onnx.TensorProto.Types.DataType type, byte[] raw, params long[] dims)
        {
            var tensor = new global::Onnx.TensorProto { Name = stem, DataType = (int)type, RawData = Google.Protobuf.ByteString.CopyFrom(raw) };
            tensor.Dims.AddRange(dims);
            g.Graph.Initializer.Add(tensor);
            return stem;
        }
        g.NodeNamedInDomain(OnnxGraphBuilder.MicrosoftDomain, "MatMulNBits", "y",
            ["x", Raw("b", global::Onnx.TensorProto.Types.DataType.Uint8, codes, n, blocks, blob),
                Raw("scales", global::Onnx.TensorProto.Types.DataType.Float, System.Runtime.InteropServices.MemoryMarshal.AsBytes(scales.AsSpan()).ToArray(), n, blocks),
                Raw("zero_points", global::Onnx.TensorProto.Types.DataType.Uint8, zeroPoints, n * zeroPointBytes)],
            OnnxGraphBuilder.Attr("K", (long)k), OnnxGraphBuilder.Attr("N", (long)n), OnnxGraphBuilder.Attr("bits", (long)bits),
            OnnxGraphBuilder.Attr("block_size", (long)blockSize), OnnxGraphBuilder.Attr("accuracy_level", 0L));
        var model = g.ToModel(17, "test");
        Assert.Contains(model.OpsetImport, o => o.Domain == OnnxGraphBuilder.MicrosoftDomain && o.Version == 1);

        using var session = new InferenceSession(Google.Protobuf.MessageExtensions.ToByteArray(model));
        using var results = session.Run([NamedOnnxValue.CreateFromTensor("x", new DenseTensor<float>(input, [1, k]))]);
        var actual = results.Single().AsTensor<float>().ToArray();
        for (var column = 0; column < n; column++)
            Assert.True(Math.Abs(expected[column] - actual[column]) < 1e-4f, $"column {column}: {actual[column]}, expected {expected[column]}");
    }

    [Theory]
    // Measured (2026-11-30): int8 top-1 98.8 %, mean KL 0.00042, max logit error 0.38; int4 92.6 %, 0.051, 6.6.
    [InlineData(WeightQuantization.Int8, 0.97, 0.002, 0.8)]
    [InlineData(WeightQuantization.Int4, 0.88, 0.1, 10)]
    public void Stories260KQuantizedStaysCloseToFp32OverTheHeldPrompts(WeightQuantization kind, double minTop1, double maxMeanKl, double maxLogitError)
    {
        using var exact = LocalModel.Open(TestModels.Stories260K);
        using var quantized = LocalModel.Open(TestModels.Stories260KQuantized(kind));
        var quality = ModelComparison.Compare(exact, quantized, Prompts, 32);
        output.WriteLine($"stories260K {kind} vs fp32 over {quality.Prompts} prompts, {quality.Positions} positions: top-1 {quality.Top1Agreement:P1}, greedy prefix kept {quality.GreedyPrefixAgreement:P1}, "
            + $"mean KL {quality.MeanKl:G3} (max {quality.MaxKl:G3}), max logit error {quality.MaxLogitError:G3} (mean {quality.MeanLogitError:G3})");
        Assert.InRange(quality.Top1Agreement, minTop1, 1);
        Assert.InRange(quality.MeanKl, 0, maxMeanKl);
        Assert.InRange(quality.MaxLogitError, 0, maxLogitError);

        var text = string.Concat(quantized.Generate("Once upon a time", new GenerationOptions(48, 0f)));
        output.WriteLine(text);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", text);
    }

    [Fact]
    public void Stories260KPerplexityOnHeldOutTextIsMeasuredForFp32Int8AndInt4()
    {
        // Our own short children's stories (models/held-out/stories.txt), written for this test, not from the training set.
        var passages = File.ReadAllLines(Path.Combine(TestModels.RepositoryRoot, "models", "held-out", "stories.txt")).Where(l => l.Trim().Length > 0).ToList();
        using var exact = LocalModel.Open(TestModels.Stories260K);
        using var int8 = LocalModel.Open(TestModels.Stories260KQuantized(WeightQuantization.Int8));
        using var int4 = LocalModel.Open(TestModels.Stories260KQuantized(WeightQuantization.Int4));
        var fp32 = ModelComparison.Perplexity(exact, passages);
        var eight = ModelComparison.Perplexity(int8, passages);
        var four = ModelComparison.Perplexity(int4, passages);
        output.WriteLine($"stories260K perplexity over {fp32.Sequences} held-out passages ({fp32.Tokens} tokens): fp32 {fp32.Perplexity:F3}, int8 {eight.Perplexity:F3}, int4 {four.Perplexity:F3}");
        Assert.Equal(passages.Count, fp32.Sequences);
        Assert.Equal(fp32.Tokens, four.Tokens);
        // A uniform guess over 512 pieces scores 512; the model reads these stories far better than that.
        Assert.InRange(fp32.Perplexity, 1, PerplexityCeiling);
        Assert.InRange(eight.Perplexity / fp32.Perplexity, 0.98, Int8PerplexityRatio);
        Assert.InRange(four.Perplexity / fp32.Perplexity, 0.95, Int4PerplexityRatio);
        // Its own greedy story is what it predicts best.
        var own = ModelComparison.Perplexity(exact, [string.Concat(exact.Generate("Once upon a time", new GenerationOptions(64, 0f)))]);
        Assert.True(own.Perplexity < fp32.Perplexity, $"its own greedy text scored {own.Perplexity:F3}, held-out text {fp32.Perplexity:F3}");
    }

    [Theory]
    [InlineData(WeightQuantization.Int8)]
    [InlineData(WeightQuantization.Int4)]
    public void QuantizedStories260KSplitInTwoStagesGeneratesWhatItDoesUnsplitAndRecordsTheQuantization(WeightQuantization kind)
    {
        var directory = TestModels.Stories260KQuantized(kind);
        var split = TestModels.NewTempDirectory($"split-{kind}");
        var exactSplit = TestModels.NewTempDirectory("split-exact");
        try
        {
            var manifest = ModelStore.Split(directory, n => BlockRange.ParseContiguousList("0:2,2:5", n), split);
            var exactManifest = ModelStore.Split(TestModels.Stories260K, n => BlockRange.ParseContiguousList("0:2,2:5", n), exactSplit);
            Assert.Equal($"{kind.ToString().ToLowerInvariant()} block 32 MatMulNBits accuracy 4", manifest.Quantization);
            Assert.Equal(manifest.Quantization, ModelStore.TryReadDescription(directory)!.Quantization);
            Assert.Null(exactManifest.Quantization);
            Assert.DoesNotContain("quantization", System.Text.Encoding.UTF8.GetString(exactManifest.CanonicalBytes()));
            Assert.NotEqual(exactManifest.ModelId, manifest.ModelId);
            Assert.Equal(manifest.ModelId, Manifest.Load(split).ModelId);

            var options = new GenerationOptions(64, 0f);
            using var whole = LocalModel.Open(directory);
            using var staged = LocalModel.Open(split);
            Assert.Equal(4, staged.Pipeline.Stages.Count);
            Assert.Equal(string.Concat(whole.Generate("Once upon a time", options)), string.Concat(staged.Generate("Once upon a time", options)));
        }
        finally
        {
            Directory.Delete(split, recursive: true);
            Directory.Delete(exactSplit, recursive: true);
        }
    }

    [Fact]
    public void SyntheticDim1024QuantizedAgreesWithFp32()
    {
        // The bench's dim-1024 model (docs/BENCHMARKS.md) with one block instead of eight, to stay fast.
        var config = new ModelConfig(1024, 2816, 1, 16, 16, 512, 512, 1e-5f, 10000f);
        var root = TestModels.NewTempDirectory("synth-1024");
        try
        {
            ModelStore.Synthesize(config, 1, Path.Combine(root, "fp32"));
            using var exact = LocalModel.Open(Path.Combine(root, "fp32"));
            // Measured (2026-11-30): top-1 100 % for both (the synthetic model's logits are far apart), max logit error int8 0.16, int4 1.5.
            foreach (var (kind, maxLogitError) in new[] { (WeightQuantization.Int8, 0.5), (WeightQuantization.Int4, 3.0) })
            {
                var directory = Path.Combine(root, kind.ToString());
                ModelStore.Synthesize(config, 1, directory, new QuantizationOptions(kind));
                var bytes = new FileInfo(Path.Combine(directory, ModelStore.ModelFile)).Length;
                using var quantized = LocalModel.Open(directory);
                var random = new Random(3);
                var prompts = Enumerable.Range(0, 4).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, 6).Select(_ => random.Next(3, 512)).ToList()).ToList();
                var quality = ModelComparison.Compare(exact, quantized, prompts, 16);
                output.WriteLine($"synthetic dim 1024 × 1 block {kind}: {bytes:N0} bytes (fp32 {new FileInfo(Path.Combine(root, "fp32", ModelStore.ModelFile)).Length:N0}); top-1 {quality.Top1Agreement:P1}, "
                    + $"greedy prefix kept {quality.GreedyPrefixAgreement:P1}, mean KL {quality.MeanKl:G3}, max logit error {quality.MaxLogitError:G3} (mean {quality.MeanLogitError:G3})");
                Assert.InRange(quality.Top1Agreement, 0.95, 1);
                Assert.InRange(quality.MaxLogitError, 0, maxLogitError);
                Assert.True(bytes < new FileInfo(Path.Combine(root, "fp32", ModelStore.ModelFile)).Length / (kind == WeightQuantization.Int8 ? 3 : 5));
            }
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void QuantizationOfHalfPrecisionWeightsOrAnUnrunnableBlockSizeIsRefused()
    {
        var weights = Onnx.Import.LlamaWeights.Synthetic(TestModels.SmallSyntheticConfig, 1);
        var half = Assert.Throws<MeshException>(() => Onnx.Import.LlamaOnnxBuilder.Build(weights, "x",
            new Onnx.Import.LlamaBuildOptions(WeightType: DType.Float16, Quantization: new QuantizationOptions(WeightQuantization.Int4))));
        Assert.Equal(MeshErrorCode.InvalidArgument, half.Code);
        var block = Assert.Throws<MeshException>(() => Onnx.Import.LlamaOnnxBuilder.Build(weights, "x",
            new Onnx.Import.LlamaBuildOptions(Quantization: new QuantizationOptions(WeightQuantization.Int8, BlockSize: 24))));
        Assert.Contains("power of two", block.Message);
    }
}
