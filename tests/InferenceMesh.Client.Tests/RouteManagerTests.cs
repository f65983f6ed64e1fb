using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace InferenceMesh.Client.Tests;

/// <summary>Bans and the server list's lifetime, on a fake clock.</summary>
public sealed class RouteManagerTests
{
    private sealed class CountingDirectory(params ServerInfo[] servers) : IServerDirectory
    {
        public int Lists { get; private set; }

        public ValueTask<IReadOnlyList<ServerInfo>> ListAsync(string modelId, CancellationToken cancellation)
        {
            Lists++;
            return ValueTask.FromResult<IReadOnlyList<ServerInfo>>(servers);
        }

        public double RoundTripMs(PeerId server) => 1;
    }

    private static readonly ServerInfo Fast = TestPeers.Server("fast", 0, 5, 1000);
    private static readonly ServerInfo Slow = TestPeers.Server("slow", 0, 5, 1);

    [Fact]
    public async Task BannedServerIsLeftOutUntilTheBanExpires()
    {
        var clock = new FakeTimeProvider();
        using var routes = new RouteManager(new CountingDirectory(Fast, Slow), "m", new MeshClientOptions { Time = clock, BanDuration = TimeSpan.FromMinutes(1) });
        Assert.Equal(TestPeers.IdFor("fast"), Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.Peer);

        routes.Ban(Fast.Peer, "test");
        Assert.True(routes.IsBanned(Fast.Peer));
        Assert.Equal(TestPeers.IdFor("slow"), Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.Peer);

        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.True(routes.IsBanned(Fast.Peer));
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.False(routes.IsBanned(Fast.Peer));
        Assert.Equal(TestPeers.IdFor("fast"), Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.Peer);
    }

    [Fact]
    public async Task ServerListIsReusedForItsLifetimeAndListedAgainAfterABan()
    {
        var clock = new FakeTimeProvider();
        var directory = new CountingDirectory(Fast, Slow);
        using var routes = new RouteManager(directory, "m", new MeshClientOptions { Time = clock, ServerListLifetime = TimeSpan.FromSeconds(10) });
        await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None);
        await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None);
        Assert.Equal(1, directory.Lists);

        clock.Advance(TimeSpan.FromSeconds(11));
        await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None);
        Assert.Equal(2, directory.Lists);

        routes.Ban(Slow.Peer, "test");
        await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None);
        Assert.Equal(3, directory.Lists);
    }

    [Fact]
    public async Task EveryServerBannedNamesTheUncoveredBlocks()
    {
        using var routes = new RouteManager(new CountingDirectory(Fast), "m", new MeshClientOptions { Time = new FakeTimeProvider() });
        routes.Ban(Fast.Peer, "test");
        var error = await Assert.ThrowsAsync<MeshException>(() => routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None));
        Assert.Equal(MeshErrorCode.RouteUnavailable, error.Code);
        Assert.Contains("blocks 0, 1, 2, 3, 4", error.Message);
    }
}
