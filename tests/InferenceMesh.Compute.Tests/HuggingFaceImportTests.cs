using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;
using Family = InferenceMesh.Tests.Shared.HuggingFaceFixtures.Family;

namespace InferenceMesh.Compute.Tests;

public sealed class HuggingFaceImportTests(ITestOutputHelper output)
{
    private const float ReferenceTolerance = 1e-4f;
    private const float ChainTolerance = 1e-5f;
    private const int PromptLength = 5;
    private const int DecodeSteps = 16;

    public static TheoryData<Family, string> FamiliesAndDtypes()
    {
        var data = new TheoryData<Family, string>();
        foreach (var family in Enum.GetValues<Family>())
            foreach (var dtype in new[] { "BF16", "F16", "F32" })
                data.Add(family, dtype);
        return data;
    }

    [Theory]
    [MemberData(nameof(FamiliesAndDtypes))]
    public void ImportedCheckpointMatchesAnIndependentForwardPassAndItsChainedStagesMatchUnsplit(Family family, string dtype)
    {
        var source = HuggingFaceFixtures.Synthetic(TestModels.NewTempDirectory($"hf-{family}-{dtype}"), family, dtype, layers: 3);
        var imported = TestModels.NewTempDirectory($"hf-{family}-{dtype}-onnx");
        var split = TestModels.NewTempDirectory($"hf-{family}-{dtype}-split");
        try
        {
            ModelStore.ImportHuggingFace(source, imported);
            var manifest = ModelStore.Split(Path.Combine(imported, ModelStore.ModelFile), count => BlockRange.SplitEvenly(count, 3), split);
            Assert.Equal(3, manifest.BlockStages.Count());
            Assert.All(manifest.Stages, s => Assert.NotNull(s.DataFile));

            var random = new Random(5);
            var tokens = Enumerable.Range(0, PromptLength + DecodeSteps).Select(_ => random.Next(300)).ToArray();
            var reference = HuggingFaceReference.Load(source).Logits(tokens);

            using var whole = WholeModel(imported);
            using var chained = new StagePipeline(manifest.Stages
                .Select(s => (IStageExecutor)new OrtStageExecutor(s, File.ReadAllBytes(Path.Combine(split, s.File)), externalDataDirectory: split)).ToList());
            float referenceDiff = 0, chainDiff = 0;
            for (var position = PromptLength - 1; position < tokens.Length; position++)
            {
                var (feed, start) = position == PromptLength - 1 ? (tokens[..PromptLength], 0) : (tokens[position..(position + 1)], position);
                var a = whole.LastLogits("s", feed, start);
                var b = chained.LastLogits("s", feed, start);
                referenceDiff = Math.Max(referenceDiff, MaxDifference(reference[position], a));
                chainDiff = Math.Max(chainDiff, MaxDifference(a, b));
            }
            output.WriteLine($"{family} {dtype}: max |logit − reference| {referenceDiff:E2}, max |chained − unsplit| {chainDiff:E2}");
            Assert.True(referenceDiff <= ReferenceTolerance, $"imported logits differ from the reference by {referenceDiff} (> {ReferenceTolerance})");
            Assert.True(chainDiff <= ChainTolerance, $"chained stages differ from the unsplit model by {chainDiff} (> {ChainTolerance})");
        }
        finally
        {
            foreach (var d in new[] { source, imported, split }) Directory.Delete(d, recursive: true);
        }
    }

    [Fact]
    public void EveryStageOfASplitExternalDataModelLoadsFromADirectoryHoldingOnlyItsOwnFiles()
    {
        var source = HuggingFaceFixtures.Synthetic(TestModels.NewTempDirectory("hf-stages"), Family.Qwen2, "BF16", layers: 4);
        var imported = TestModels.NewTempDirectory("hf-stages-onnx");
        var split = TestModels.NewTempDirectory("hf-stages-split");
        try
        {
            ModelStore.ImportHuggingFace(source, imported);
            var manifest = ModelStore.Split(Path.Combine(imported, ModelStore.ModelFile), count => BlockRange.SplitEvenly(count, 4), split);
            var dataBytes = 0L;
            foreach (var stage in manifest.Stages)
            {
                var alone = TestModels.NewTempDirectory("hf-stage-alone");
                try
                {
                    File.Copy(Path.Combine(split, stage.File), Path.Combine(alone, stage.File));
                    File.Copy(Path.Combine(split, stage.DataFile!), Path.Combine(alone, stage.DataFile!));
                    dataBytes += new FileInfo(Path.Combine(alone, stage.DataFile!)).Length;
                    using var executor = new OrtStageExecutor(stage, File.ReadAllBytes(Path.Combine(alone, stage.File)), externalDataDirectory: alone);
                    Assert.Equal(stage.Kind == StageKind.Head ? 0 : 64, executor.ActivationWidth);
                }
                finally
                {
                    Directory.Delete(alone, recursive: true);
                }
            }
            // Only the tied embedding is needed twice (the head gathers it, the tail projects with it); every block weight is stored once.
            var whole = new FileInfo(Path.Combine(imported, ModelStore.ModelDataFile)).Length;
            Assert.InRange(dataBytes, whole, whole + 300 * 64 * 4 + manifest.Stages.Count * ExternalDataWriter.Alignment * 40);
        }
        finally
        {
            foreach (var d in new[] { source, imported, split }) Directory.Delete(d, recursive: true);
        }
    }

    [Fact]
    public void ManifestRefusesAStageWhoseDataFileWasAlteredOrRemoved()
    {
        var source = HuggingFaceFixtures.Synthetic(TestModels.NewTempDirectory("hf-integrity"), Family.Mistral, "F16");
        var imported = TestModels.NewTempDirectory("hf-integrity-onnx");
        var split = TestModels.NewTempDirectory("hf-integrity-split");
        try
        {
            ModelStore.ImportHuggingFace(source, imported);
            var manifest = ModelStore.Split(Path.Combine(imported, ModelStore.ModelFile), count => BlockRange.SplitEvenly(count, 2), split);
            var data = Path.Combine(split, manifest.BlockStages.First().DataFile!);
            using (var stream = File.OpenWrite(data))
            {
                stream.Position = stream.Length / 2;
                stream.WriteByte(0x5A);
            }
            Assert.Equal(MeshErrorCode.IntegrityMismatch, Assert.Throws<MeshException>(() => Manifest.Load(split)).Code);
            File.Delete(data);
            var missing = Assert.Throws<MeshException>(() => Manifest.Load(split));
            Assert.Equal(MeshErrorCode.InvalidManifest, missing.Code);
            Assert.Contains(Path.GetFileName(data), missing.Message);
        }
        finally
        {
            foreach (var d in new[] { source, imported, split }) Directory.Delete(d, recursive: true);
        }
    }

    [Fact]
    public void Float16WeightsHalveTheDataAndStayCloseToFloat32()
    {
        var source = HuggingFaceFixtures.Stories260K(TestModels.NewTempDirectory("hf-fp16"), tied: true);
        var fp32 = TestModels.NewTempDirectory("hf-fp16-32");
        var fp16 = TestModels.NewTempDirectory("hf-fp16-16");
        try
        {
            var full = ModelStore.ImportHuggingFace(source, fp32);
            var half = ModelStore.ImportHuggingFace(source, fp16, DType.Float16);
            Assert.InRange(half.WeightBytes, full.WeightBytes * 0.45, full.WeightBytes * 0.55);
            using var a = WholeModel(fp32);
            using var b = WholeModel(fp16);
            int[] prompt = [1, 403, 407, 261, 378];
            var maxDiff = MaxDifference(a.LastLogits("s", prompt, 0), b.LastLogits("s", prompt, 0));
            var agree = 0;
            var next = Sampler.ArgMax(a.LastLogits("greedy-a", prompt, 0));
            var nextB = Sampler.ArgMax(b.LastLogits("greedy-b", prompt, 0));
            for (var position = prompt.Length; position < 64; position++)
            {
                if (next == nextB) agree++;
                var la = a.LastLogits("greedy-a", [next], position);
                var lb = b.LastLogits("greedy-b", [nextB], position);
                maxDiff = Math.Max(maxDiff, MaxDifference(la, lb));
                (next, nextB) = (Sampler.ArgMax(la), Sampler.ArgMax(lb));
            }
            output.WriteLine($"stories260K fp16 vs fp32: weights {half.WeightBytes} vs {full.WeightBytes} bytes; greedy tokens agreeing {agree}/{64 - prompt.Length}; max |logit diff| {maxDiff:E2}");
            Assert.True(maxDiff < 0.1f, $"fp16 logits differ from fp32 by {maxDiff}");
        }
        finally
        {
            foreach (var d in new[] { source, fp32, fp16 }) Directory.Delete(d, recursive: true);
        }
    }

    private static StagePipeline WholeModel(string directory)
    {
        var path = Path.Combine(directory, ModelStore.ModelFile);
        var model = OnnxModelFile.Load(path);
        return new StagePipeline([new OrtStageExecutor(GraphSplitter.DescribeWhole(model, ModelStore.ModelFile), File.ReadAllBytes(path), externalDataDirectory: directory)]);
    }

    private static float MaxDifference(float[] expected, float[] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        var max = 0f;
        for (var i = 0; i < expected.Length; i++) max = Math.Max(max, Math.Abs(expected[i] - actual[i]));
        return max;
    }
}
