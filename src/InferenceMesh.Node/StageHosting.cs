using InferenceMesh.P2P;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Node;

/// <summary>Runs the stage protocol on libp2p streams: the connector a node pushes with, and the handler it serves with.</summary>
public static class StageHosting
{
    /// <summary>Opens stage streams to peers through <paramref name="host"/>, each behind the emulated <paramref name="linkDelay"/>, their bytes counted in <paramref name="traffic"/>.</summary>
    public static StageConnector Connector(Libp2pHost host, TimeSpan linkDelay = default, StageTraffic? traffic = null) =>
        new(async (peer, addresses, cancellation) => await host.NewStreamAsync(PeerId.Parse(peer), addresses.Select(Multiaddr.Parse).ToList(), [StageProtocol.Id], cancellation).ConfigureAwait(false),
            linkDelay, traffic: traffic);

    /// <summary>Serves every inbound <c>/inferencemesh/stage/1.0.0</c> stream with <paramref name="server"/>, counting its bytes with the connector's and its sessions' KV against the remote peer's share.</summary>
    public static void Serve(Libp2pHost host, StageServer server, StageConnector connector) =>
        host.SetHandler(StageProtocol.Id, (stream, cancellation) => server.ServeAsync(new StageChannel(connector.Wrap(stream), traffic: connector.Traffic), stream.Connection.RemotePeer.ToString(), cancellation));
}
