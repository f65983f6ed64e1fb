using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Split;
using Google.Protobuf;

namespace InferenceMesh.Compute.Tests;

public sealed class ContextInputsTests
{
    private static long[] Values(ContextValue value)
    {
        var count = value.Shape.Aggregate(1L, (a, d) => a * d);
        return Enumerable.Range(0, (int)count).Select(value.ValueAt).ToArray();
    }

    [Fact]
    public void PositionsAndGrowingMaskFollowTheCachedAndNewPositions()
    {
        var positions = ContextInputs.For(ContextInputs.PositionIds, ["batch", "seq"], cached: 5, steps: 3);
        Assert.Equal([1L, 3], positions.Shape);
        Assert.Equal([5L, 6, 7], Values(positions));
        var mask = ContextInputs.For(ContextInputs.AttentionMask, ["batch", "total"], cached: 5, steps: 3);
        Assert.Equal([1L, 8], mask.Shape);
        Assert.All(Values(mask), v => Assert.Equal(1, v));
    }

    [Fact]
    public void AStaticMaskKeepsItsDeclaredLengthWithZerosBeyondTheSession()
    {
        var mask = ContextInputs.For(ContextInputs.AttentionMask, ["batch", "16"], cached: 2, steps: 2);
        Assert.Equal([1L, 16], mask.Shape);
        Assert.Equal([1L, 1, 1, 1, .. Enumerable.Repeat(0L, 12)], Values(mask));
        var overflow = Assert.Throws<MeshException>(() => ContextInputs.For(ContextInputs.AttentionMask, ["batch", "16"], cached: 15, steps: 2));
        Assert.Equal(MeshErrorCode.ContextOverflow, overflow.Code);
    }

    [Fact]
    public void GroupQueryAttentionLengthsKeepTheDeclaredRank()
    {
        var seqlens = ContextInputs.For(ContextInputs.SeqLensK, ["batch"], cached: 9, steps: 1);
        Assert.Equal([1L], seqlens.Shape);
        Assert.Equal([9L], Values(seqlens));
        var scalar = ContextInputs.For(ContextInputs.TotalSequenceLength, [], cached: 9, steps: 1);
        Assert.Empty(scalar.Shape);
        Assert.Equal([10L], Values(scalar));
        var one = ContextInputs.For(ContextInputs.TotalSequenceLength, ["1"], cached: 9, steps: 1);
        Assert.Equal([1L], one.Shape);
        Assert.Equal([9L], Values(ContextInputs.For(ContextInputs.PastSequenceLength, [], cached: 9, steps: 1)));
        Assert.Equal([9L, 10], Values(ContextInputs.For(ContextInputs.CachePosition, ["seq"], cached: 9, steps: 2)));
    }

    [Fact]
    public void UnknownNamesAndImpossibleRanksAreRefusedWithTheReason()
    {
        var unknown = Assert.Throws<MeshException>(() => ContextInputs.For("token_type_ids", ["batch", "seq"], 0, 1));
        Assert.Equal(MeshErrorCode.InvalidOnnx, unknown.Code);
        Assert.Contains("seqlens_k", unknown.Message);
        var rank = Assert.Throws<MeshException>(() => ContextInputs.For(ContextInputs.TotalSequenceLength, ["batch", "x"], 0, 1));
        Assert.Contains("rank 2", rank.Message);
    }

    [Fact]
    public void AStageNeedingAnUnknownContextInputIsRefusedWhenLoaded()
    {
        var model = InferenceMesh.Tests.Shared.GqaExport.Build(1, seed: 2);
        model.Graph.Input.Single(i => i.Name == "seqlens_k").Name = "key_lengths";
        foreach (var node in model.Graph.Node)
            for (var i = 0; i < node.Input.Count; i++)
                if (node.Input[i] == "seqlens_k") node.Input[i] = "key_lengths";
        var stage = GraphSplitter.Split(model, new GraphAnalysis(model), BlockRange.SplitEvenly(1, 1))[1];
        var error = Assert.Throws<MeshException>(() => new OrtStageExecutor(stage.Descriptor, stage.Model.ToByteArray()));
        Assert.Equal(MeshErrorCode.InvalidOnnx, error.Code);
        Assert.Contains("'key_lengths'", error.Message);
    }
}
