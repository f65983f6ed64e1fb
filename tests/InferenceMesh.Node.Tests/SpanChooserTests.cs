using InferenceMesh.Core;
using InferenceMesh.Node;

namespace InferenceMesh.Node.Tests;

public sealed class SpanChooserTests
{
    [Fact]
    public void AnEmptySwarmStartsAtBlockZero() => Assert.Equal(new BlockRange(0, 3), SpanChooser.Choose(5, 3, []));

    [Fact]
    public void NodesJoiningOneByOneCoverEveryBlock()
    {
        var served = new List<(BlockRange, double)>();
        for (var i = 0; i < 3; i++) served.Add((SpanChooser.Choose(5, 2, served), 10));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 4), new BlockRange(3, 5)], served.Select(s => s.Item1));
    }

    [Fact]
    public void TheWeakestBlocksGetHelpFirst()
    {
        var chosen = SpanChooser.Choose(6, 2, [(new BlockRange(0, 6), 10), (new BlockRange(0, 3), 50), (new BlockRange(4, 6), 5)]);
        Assert.Equal(new BlockRange(3, 5), chosen);
    }

    [Fact]
    public void RefusesMoreBlocksThanTheModelHas() =>
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => SpanChooser.Choose(5, 6, [])).Code);
}
