using InferenceMesh.Core;
using Microsoft.Extensions.Time.Testing;

namespace InferenceMesh.Client.Tests;

/// <summary>Bans and the server list's lifetime, on a fake clock.</summary>
public sealed class RouteManagerTests
{
    private sealed class CountingDirectory(params ServerSpan[] servers) : IServerDirectory
    {
        public int Lists { get; private set; }

        public ValueTask<IReadOnlyList<ServerSpan>> ListAsync(string modelId, CancellationToken cancellation)
        {
            Lists++;
            return ValueTask.FromResult<IReadOnlyList<ServerSpan>>(servers);
        }
    }

    private static readonly ServerSpan Fast = new("fast", [], new BlockRange(0, 5), 1000, 1);
    private static readonly ServerSpan Slow = new("slow", [], new BlockRange(0, 5), 1, 1);

    [Fact]
    public async Task BannedServerIsLeftOutUntilTheBanExpires()
    {
        var clock = new FakeTimeProvider();
        using var routes = new RouteManager(new CountingDirectory(Fast, Slow), "m", new MeshClientOptions { Time = clock, BanDuration = TimeSpan.FromMinutes(1) });
        Assert.Equal("fast", Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.PeerId);

        routes.Ban("fast", "test");
        Assert.True(routes.IsBanned("fast"));
        Assert.Equal("slow", Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.PeerId);

        clock.Advance(TimeSpan.FromSeconds(59));
        Assert.True(routes.IsBanned("fast"));
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.False(routes.IsBanned("fast"));
        Assert.Equal("fast", Assert.Single(await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None)).Server.PeerId);
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

        routes.Ban("slow", "test");
        await routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None);
        Assert.Equal(3, directory.Lists);
    }

    [Fact]
    public async Task EveryServerBannedNamesTheUncoveredBlocks()
    {
        using var routes = new RouteManager(new CountingDirectory(Fast), "m", new MeshClientOptions { Time = new FakeTimeProvider() });
        routes.Ban("fast", "test");
        var error = await Assert.ThrowsAsync<MeshException>(() => routes.PlanAsync(new BlockRange(0, 5), CancellationToken.None));
        Assert.Equal(MeshErrorCode.RouteUnavailable, error.Code);
        Assert.Contains("blocks 0, 1, 2, 3, 4", error.Message);
    }
}
