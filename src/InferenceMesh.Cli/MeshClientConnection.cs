using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli;

/// <summary>
/// A <see cref="MeshClient"/> joined to a mesh: a client-mode DHT peer with a fresh identity, the servers its
/// span records list (round trips measured with one libp2p ping each), and stage streams over its host.
/// </summary>
public sealed class MeshClientConnection : IAsyncDisposable
{
    private readonly Ed25519KeyPair identity;

    private MeshClientConnection(Ed25519KeyPair identity, MeshPeer peer, MeshClient client)
    {
        this.identity = identity;
        Peer = peer;
        Client = client;
    }

    public MeshPeer Peer { get; }
    public MeshClient Client { get; }

    /// <summary>Joins through <paramref name="bootstrap"/> and loads the head, tail and tokenizer of <paramref name="splitDirectory"/>. Safe to cancel.</summary>
    public static async Task<MeshClientConnection> ConnectAsync(IReadOnlyList<string> bootstrap, string splitDirectory, MeshClientOptions options,
        TimeSpan linkDelay, Action<string> log, CancellationToken cancellation)
    {
        var identity = Ed25519KeyPair.Generate();
        MeshPeer? peer = null;
        try
        {
            peer = await MeshPeer.StartAsync(identity, [], bootstrap, DhtMode.Client, log, null, cancellation);
            var host = peer.Host;
            var manifest = Manifest.Load(splitDirectory);
            var directory = new DhtServerDirectory(peer.Spans, manifest.BlockCount, async (id, addresses, ct) =>
            {
                var address = addresses.FirstOrDefault() ?? throw new MeshException(MeshErrorCode.RouteUnavailable, $"{id} announced no address");
                return (await host.PingAsync(address.WithPeerId(id), 1, ct))[0].TotalMilliseconds;
            });
            var client = MeshClient.Open(splitDirectory, StageHosting.Connector(host, linkDelay), directory, options);
            return new MeshClientConnection(identity, peer, client);
        }
        catch
        {
            if (peer is not null) await peer.DisposeAsync();
            identity.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Client.DisposeAsync();
        await Peer.DisposeAsync();
        identity.Dispose();
    }
}
