using System.Collections.Concurrent;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>
/// The servers of a model as the DHT's signed span announcements list them (expired or badly signed ones are
/// already dropped by the validator), with round-trip times measured once per peer for planning and afresh for a survey.
/// </summary>
/// <param name="roundTrip">Measures the round trip to a server in milliseconds; a failure leaves the server out.</param>
/// <param name="connection">How the host is connected to a server now; null when the directory cannot tell.</param>
/// <param name="time">The clock bounding a survey's round trips by <see cref="SurveyPingTimeout"/>.</param>
public sealed class DhtServerDirectory(SpanDirectory spans, int blockCount, Func<PeerId, IReadOnlyList<Multiaddr>, CancellationToken, Task<double>> roundTrip,
    Func<PeerId, PeerConnection>? connection = null, TimeProvider? time = null) : IServerDirectory
{
    private readonly ConcurrentDictionary<PeerId, double> _roundTrips = new();

    /// <summary>How long <see cref="SurveyAsync"/> waits for one server's round trip before it reports none.</summary>
    public TimeSpan SurveyPingTimeout { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>Round trips <see cref="SurveyAsync"/> measures at once (a DHT lists up to 64 servers per block).</summary>
    public int MaxConcurrentPings { get; init; } = 16;

    public async ValueTask<IReadOnlyList<ServerInfo>> ListAsync(string modelId, CancellationToken cancellation)
    {
        var perBlock = await spans.ListServersAsync(modelId, blockCount, cancellation).ConfigureAwait(false);
        var servers = new List<ServerInfo>();
        foreach (var info in perBlock.SelectMany(b => b).Where(i => i.State == ServerState.Online).GroupBy(i => i.Peer).Select(g => g.First()))
        {
            if (!_roundTrips.TryGetValue(info.Peer, out var rtt))
            {
                try
                {
                    rtt = await roundTrip(info.Peer, info.Addresses, cancellation).ConfigureAwait(false);
                    _roundTrips[info.Peer] = rtt;
                }
                catch (Exception e) when (IsUnreachable(e))
                {
                    continue;
                }
            }
            servers.Add(info);
        }
        return servers;
    }

    public double RoundTripMs(PeerId server) => _roundTrips.TryGetValue(server, out var rtt) ? rtt : double.PositiveInfinity;

    /// <summary>
    /// Every unexpired announcement (the latest per server), each server not announced offline pinged at once with
    /// <see cref="SurveyPingTimeout"/>; a fresh round trip also replaces the one planning uses. Safe to cancel.
    /// </summary>
    public async ValueTask<IReadOnlyList<SwarmPeer>> SurveyAsync(string modelId, CancellationToken cancellation)
    {
        var perBlock = await spans.ListServersAsync(modelId, blockCount, cancellation).ConfigureAwait(false);
        var latest = perBlock.SelectMany(b => b).GroupBy(i => i.Peer).Select(g => g.MaxBy(i => i.IssuedAt)!)
            .OrderBy(i => i.Span.Start).ThenBy(i => i.Peer.ToString(), StringComparer.Ordinal).ToList();
        var peers = new SwarmPeer[latest.Count];
        var bounded = new ParallelOptions { MaxDegreeOfParallelism = MaxConcurrentPings, CancellationToken = cancellation };
        await Parallel.ForEachAsync(Enumerable.Range(0, latest.Count), bounded, async (i, ct) =>
        {
            var info = latest[i];
            var rtt = info.State == ServerState.Offline ? null : await MeasureAsync(info, ct).ConfigureAwait(false);
            peers[i] = new SwarmPeer(info.Peer, info.Addresses, info.Span, info.State, info.Throughput, info.FreeCacheTokens, info.ExpiresAt, rtt,
                connection?.Invoke(info.Peer) ?? PeerConnection.Unknown);
        }).ConfigureAwait(false);
        return peers;
    }

    private async Task<double?> MeasureAsync(ServerInfo info, CancellationToken cancellation)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        using var timeout = new CancellationTokenSource(SurveyPingTimeout, time ?? TimeProvider.System);
        using var link = timeout.Token.Register(bounded.Cancel);
        try
        {
            var rtt = await roundTrip(info.Peer, info.Addresses, bounded.Token).ConfigureAwait(false);
            _roundTrips[info.Peer] = rtt;
            return rtt;
        }
        catch (Exception e) when (IsUnreachable(e) || e is OperationCanceledException && !cancellation.IsCancellationRequested)
        {
            return null;
        }
    }

    private static bool IsUnreachable(Exception e) => e is Core.MeshException or IOException or System.Net.Sockets.SocketException or TimeoutException;
}
