using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

public sealed class RoutePlannerTests
{
    private static readonly Dictionary<PeerId, double> RoundTrips = new()
    {
        [TestPeers.IdFor("a")] = 50,
        [TestPeers.IdFor("b")] = 50,
        [TestPeers.IdFor("c")] = 60,
    };

    private static IReadOnlyList<PlannedHop> Plan(IReadOnlyList<ServerInfo> servers, BlockRange blocks, Func<PeerId, bool>? isBanned = null) =>
        RoutePlanner.Plan(servers, blocks, peer => RoundTrips.GetValueOrDefault(peer, 1), isBanned);

    [Theory]
    [InlineData(80, 10, "direct")]
    [InlineData(5, 10, "relayed")]
    [InlineData(10, 10, "direct")]
    public void RelayedServerIsChargedItsMeasuredRoundTripAndLosesTiesToADirectServerOfTheSameSpan(double relayedMs, double directMs, string expected)
    {
        var relayed = TestPeers.Server("relayed", 0, 5) with { UsingRelay = true };
        var direct = TestPeers.Server("direct", 0, 5);
        var rtt = new Dictionary<PeerId, double> { [relayed.Peer] = relayedMs, [direct.Peer] = directMs };

        var route = RoutePlanner.Plan([relayed, direct], new BlockRange(0, 5), peer => rtt[peer]);

        Assert.Equal(TestPeers.IdFor(expected), Assert.Single(route).Server.Peer);
    }

    [Fact]
    public void PrefersFewerHopsWhenRoundTripsDominate()
    {
        var route = Plan([TestPeers.Server("a", 0, 2), TestPeers.Server("b", 2, 5), TestPeers.Server("c", 0, 5)], new BlockRange(0, 5));
        Assert.Equal([TestPeers.IdFor("c")], route.Select(h => h.Server.Peer));
    }

    [Fact]
    public void PrefersFastServersWhenComputeDominates()
    {
        var route = Plan([TestPeers.Server("slow", 0, 5, throughput: 1), TestPeers.Server("fast-a", 0, 3, throughput: 1000), TestPeers.Server("fast-b", 3, 5, throughput: 1000)], new BlockRange(0, 5));
        Assert.Equal([TestPeers.IdFor("fast-a"), TestPeers.IdFor("fast-b")], route.Select(h => h.Server.Peer));
        Assert.Equal(new BlockRange(3, 5), route[1].Blocks);
    }

    [Fact]
    public void UsesPartOfASpanWhenTheRangeStartsInside()
    {
        var route = Plan([TestPeers.Server("a", 0, 5)], new BlockRange(2, 4));
        Assert.Equal(new BlockRange(2, 4), Assert.Single(route).Blocks);
    }

    [Fact]
    public void SkipsBannedServers()
    {
        var route = Plan([TestPeers.Server("near", 0, 5), TestPeers.Server("c", 0, 5)], new BlockRange(0, 5), id => id == TestPeers.IdFor("near"));
        Assert.Equal(TestPeers.IdFor("c"), Assert.Single(route).Server.Peer);
    }

    [Fact]
    public void NamesTheUncoveredBlocks()
    {
        var error = Assert.Throws<MeshException>(() => Plan([TestPeers.Server("a", 0, 2), TestPeers.Server("b", 4, 5)], new BlockRange(0, 5)));
        Assert.Equal(MeshErrorCode.RouteUnavailable, error.Code);
        Assert.Contains("blocks 2, 3", error.Message);
    }
}
