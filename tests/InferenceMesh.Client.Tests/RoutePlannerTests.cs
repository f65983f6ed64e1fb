using InferenceMesh.Client;
using InferenceMesh.Core;

namespace InferenceMesh.Client.Tests;

public sealed class RoutePlannerTests
{
    private static ServerSpan Server(string id, int start, int end, double throughput = 100, double rtt = 1) => new(id, [], new BlockRange(start, end), throughput, rtt);

    [Fact]
    public void PrefersFewerHopsWhenRoundTripsDominate()
    {
        var route = RoutePlanner.Plan([Server("a", 0, 2, rtt: 50), Server("b", 2, 5, rtt: 50), Server("c", 0, 5, rtt: 60)], new BlockRange(0, 5));
        Assert.Equal(["c"], route.Select(h => h.Server.PeerId));
    }

    [Fact]
    public void PrefersFastServersWhenComputeDominates()
    {
        var route = RoutePlanner.Plan([Server("slow", 0, 5, throughput: 1), Server("a", 0, 3, throughput: 1000), Server("b", 3, 5, throughput: 1000)], new BlockRange(0, 5));
        Assert.Equal(["a", "b"], route.Select(h => h.Server.PeerId));
        Assert.Equal(new BlockRange(3, 5), route[1].Blocks);
    }

    [Fact]
    public void UsesPartOfASpanWhenTheRangeStartsInside()
    {
        var route = RoutePlanner.Plan([Server("a", 0, 5)], new BlockRange(2, 4));
        Assert.Equal(new BlockRange(2, 4), Assert.Single(route).Blocks);
    }

    [Fact]
    public void SkipsBannedServers()
    {
        var route = RoutePlanner.Plan([Server("a", 0, 5), Server("b", 0, 5, rtt: 10)], new BlockRange(0, 5), id => id == "a");
        Assert.Equal("b", Assert.Single(route).Server.PeerId);
    }

    [Fact]
    public void NamesTheUncoveredBlocks()
    {
        var error = Assert.Throws<MeshException>(() => RoutePlanner.Plan([Server("a", 0, 2), Server("b", 4, 5)], new BlockRange(0, 5)));
        Assert.Equal(MeshErrorCode.RouteUnavailable, error.Code);
        Assert.Contains("blocks 2, 3", error.Message);
    }
}
