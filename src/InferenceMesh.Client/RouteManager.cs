using System.Collections.Concurrent;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>
/// The one place that decides where a client's steps go (Petals' sequence manager): it keeps the list of
/// servers from the directory (refreshed after <see cref="MeshClientOptions.ServerListLifetime"/>, or at once
/// after a failure), the bans of failed servers (for <see cref="MeshClientOptions.BanDuration"/>), and plans
/// routes over what is left with <see cref="RoutePlanner"/>. Thread-safe; shared by every session of a client.
/// </summary>
public sealed class RouteManager(IServerDirectory directory, string modelId, MeshClientOptions options) : IDisposable
{
    private readonly ConcurrentDictionary<PeerId, DateTimeOffset> _bannedUntil = new();
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private IReadOnlyList<ServerInfo>? _servers;
    private DateTimeOffset _listedAt;

    /// <summary>Whether <paramref name="peerId"/> is banned now.</summary>
    public bool IsBanned(PeerId peerId) => _bannedUntil.TryGetValue(peerId, out var until) && until > options.Time.GetUtcNow();

    /// <summary>Leaves <paramref name="peerId"/> out of routes for the ban duration, and makes the next plan list the servers afresh.</summary>
    public void Ban(PeerId peerId, string reason) => Ban(peerId, reason, options.BanDuration);

    /// <summary>Leaves <paramref name="peerId"/> out of routes for <paramref name="duration"/> (a longer ban never shortened), and makes the next plan list the servers afresh.</summary>
    public void Ban(PeerId peerId, string reason, TimeSpan duration)
    {
        var until = options.Time.GetUtcNow() + duration;
        _bannedUntil.AddOrUpdate(peerId, until, (_, before) => before > until ? before : until);
        Volatile.Write(ref _servers, null);
        options.Log?.Invoke($"banned {peerId} for {duration.TotalSeconds:F0} s: {reason}");
    }

    /// <summary>
    /// Servers listed now, not banned and not in <paramref name="exclude"/>, whose span covers <paramref name="blocks"/>: who may validate a hop
    /// of those blocks. Safe to cancel.
    /// </summary>
    public async Task<IReadOnlyList<ServerInfo>> ValidatorsAsync(BlockRange blocks, IReadOnlySet<PeerId> exclude, CancellationToken cancellation)
    {
        var servers = await ServersAsync(cancellation).ConfigureAwait(false);
        return servers.Where(s => s.State == ServerState.Online && s.Span.Start <= blocks.Start && s.Span.End >= blocks.End && !IsBanned(s.Peer) && !exclude.Contains(s.Peer))
            .GroupBy(s => s.Peer).Select(g => g.First()).ToList();
    }

    /// <summary>Runs over the servers listed before each plan, before the plan leaves out the banned: the client judges published fraud reports here.</summary>
    internal Func<IReadOnlyList<ServerInfo>, CancellationToken, Task>? Screen { get; init; }

    /// <summary>Plans <paramref name="blocks"/> over the servers listed now and not banned. Safe to cancel.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.RouteUnavailable"/> naming the blocks no usable server covers.</exception>
    public async Task<IReadOnlyList<PlannedHop>> PlanAsync(BlockRange blocks, CancellationToken cancellation)
    {
        var servers = await ServersAsync(cancellation).ConfigureAwait(false);
        if (Screen is { } screen) await screen(servers, cancellation).ConfigureAwait(false);
        return RoutePlanner.Plan(servers, blocks, directory.RoundTripMs, IsBanned);
    }

    private async Task<IReadOnlyList<ServerInfo>> ServersAsync(CancellationToken cancellation)
    {
        if (Fresh() is { } cached) return cached;
        await _refreshing.WaitAsync(cancellation).ConfigureAwait(false);
        try
        {
            if (Fresh() is { } refreshed) return refreshed;
            var servers = await directory.ListAsync(modelId, cancellation).ConfigureAwait(false);
            _listedAt = options.Time.GetUtcNow();
            Volatile.Write(ref _servers, servers);
            return servers;
        }
        finally
        {
            _refreshing.Release();
        }
    }

    private IReadOnlyList<ServerInfo>? Fresh() =>
        Volatile.Read(ref _servers) is { } servers && options.Time.GetUtcNow() - _listedAt < options.ServerListLifetime ? servers : null;

    public void Dispose() => _refreshing.Dispose();
}
