using Google.Protobuf;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using InferenceMesh.Tests.Shared;
using Onnx;

namespace InferenceMesh.Compute.Tests;

public sealed class ChainedStagesTests
{
    private const float Tolerance = 1e-5f;

    public static TheoryData<string, int> Splits() => new()
    {
        { "stories260K", 2 }, { "stories260K", 3 }, { "stories260K", 5 },
        { "synthetic", 1 }, { "synthetic", 3 },
        { "stories260K-renamed", 3 },
    };

    [Theory]
    [MemberData(nameof(Splits))]
    public void ChainedStagesGiveTheUnsplitLogits(string which, int stageCount)
    {
        var (model, vocab) = Load(which);
        using var whole = new StagePipeline([new OrtStageExecutor(GraphSplitter.DescribeWhole(model, "model.onnx"), model.ToByteArray())]);
        var analysis = new GraphAnalysis(model);
        using var chained = new StagePipeline(GraphSplitter.Split(model, analysis, BlockRange.SplitEvenly(analysis.BlockCount, stageCount))
            .Select(s => (IStageExecutor)new OrtStageExecutor(s.Descriptor, s.Model.ToByteArray())).ToList());

        int[] prompt = [1, 203, 207, 261, 178, 11, 42, 7];
        var maxDiff = Compare(whole.Forward("s", prompt, 0), chained.Forward("s", prompt, 0));
        var position = prompt.Length;
        var next = Sampler.ArgMax(whole.LastLogits("probe", prompt, 0));
        for (var step = 0; step < 32; step++, position++)
        {
            var a = whole.Forward("s", [next], position);
            var b = chained.Forward("s", [next], position);
            maxDiff = Math.Max(maxDiff, Compare(a, b));
            next = Sampler.ArgMax(a.AsFloats()[^vocab..]);
        }
        Assert.True(maxDiff <= Tolerance, $"max abs logit difference {maxDiff} exceeds {Tolerance}");
        Assert.All(chained.Stages.Skip(1).SkipLast(1), s => Assert.Equal(position, s.CachedLength("s")));
    }

    private static (ModelProto Model, int Vocab) Load(string which) => which switch
    {
        "stories260K" => (OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile)), 512),
        "stories260K-renamed" => (GraphMutations.RenameAndShuffle(OnnxModelFile.Load(Path.Combine(TestModels.Stories260K, ModelStore.ModelFile)), 5), 512),
        _ => (OnnxModelFile.Load(Path.Combine(TestModels.SmallSynthetic, ModelStore.ModelFile)), TestModels.SmallSyntheticConfig.Vocab),
    };

    private static float Compare(TensorData expected, TensorData actual)
    {
        Assert.Equal(expected.Shape, actual.Shape);
        var a = expected.AsFloats();
        var b = actual.AsFloats();
        var max = 0f;
        for (var i = 0; i < a.Length; i++) max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }
}
