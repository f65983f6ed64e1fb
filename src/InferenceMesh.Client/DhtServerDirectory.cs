using System.Collections.Concurrent;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>
/// The servers of a model as the DHT's signed span announcements list them (expired or badly signed ones are
/// already dropped by the validator), with round-trip times measured once per peer.
/// </summary>
/// <param name="roundTrip">Measures the round trip to a server in milliseconds; a failure leaves the server out.</param>
public sealed class DhtServerDirectory(SpanDirectory spans, int blockCount, Func<PeerId, IReadOnlyList<Multiaddr>, CancellationToken, Task<double>> roundTrip) : IServerDirectory
{
    private readonly ConcurrentDictionary<PeerId, double> _roundTrips = new();

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
                catch (Exception e) when (e is Core.MeshException or IOException or System.Net.Sockets.SocketException or TimeoutException)
                {
                    continue;
                }
            }
            servers.Add(info);
        }
        return servers;
    }

    public double RoundTripMs(PeerId server) => _roundTrips.TryGetValue(server, out var rtt) ? rtt : double.PositiveInfinity;
}
