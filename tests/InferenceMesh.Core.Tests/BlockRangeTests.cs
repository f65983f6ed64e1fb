using InferenceMesh.Core;

namespace InferenceMesh.Core.Tests;

public sealed class BlockRangeTests
{
    [Theory]
    [InlineData(5, 1, "0:5")]
    [InlineData(5, 2, "0:3 3:5")]
    [InlineData(5, 3, "0:2 2:4 4:5")]
    [InlineData(5, 5, "0:1 1:2 2:3 3:4 4:5")]
    public void SplitsEvenlyWithLargerRangesFirst(int blocks, int parts, string expected) =>
        Assert.Equal(expected, string.Join(' ', BlockRange.SplitEvenly(blocks, parts)));

    [Fact]
    public void ParsesContiguousLists()
    {
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 5)], BlockRange.ParseContiguousList("0:2,2:5", 5));
    }

    [Theory]
    [InlineData("0:2,3:5", "contiguous")]
    [InlineData("0:2,2:4", "cover 0:4")]
    [InlineData("2:2", "empty")]
    [InlineData("a:b", "not a block range")]
    [InlineData("1:3", "contiguous")]
    public void RefusesBadLists(string text, string message)
    {
        var error = Assert.Throws<MeshException>(() => BlockRange.ParseContiguousList(text, 5));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void RefusesMoreStagesThanBlocks() =>
        Assert.Equal(MeshErrorCode.InvalidArgument, Assert.Throws<MeshException>(() => BlockRange.SplitEvenly(5, 6)).Code);
}
