using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli;

/// <summary>
/// A started mesh peer: a libp2p host, the mesh's Kademlia DHT on <c>/inferencemesh/kad/1.0.0</c> with the
/// span-record validator, and the span directory over it. Joins through bootstrap peers and keeps the DHT
/// maintained (expiry, republish, refresh: <see cref="KadDht.Start"/>) until disposed.
/// </summary>
public sealed class MeshPeer : IAsyncDisposable
{
    private MeshPeer(Libp2pHost host, KadDht dht, Ed25519KeyPair identity)
    {
        Host = host;
        Dht = dht;
        Spans = new SpanDirectory(dht, identity);
        dht.Start();
    }

    /// <summary>A free-form record namespace (<c>/mesh/…</c>) every mesh peer stores, for tools and tests.</summary>
    public const string MeshNamespace = "mesh";

    public Libp2pHost Host { get; }
    public KadDht Dht { get; }
    public SpanDirectory Spans { get; }

    /// <summary>Starts listening, joins the DHT through <paramref name="bootstrap"/> (failures are logged), and returns the peer. Safe to cancel.</summary>
    /// <param name="beforeListening">Registers protocol handlers before the host accepts connections.</param>
    public static async Task<MeshPeer> StartAsync(Ed25519KeyPair identity, IEnumerable<string> listen, IReadOnlyList<string> bootstrap, DhtMode mode,
        Action<string> log, Action<Libp2pHost>? beforeListening, CancellationToken cancellation)
    {
        var host = new Libp2pHost(new Libp2pHostOptions { Identity = identity, Log = log });
        try
        {
            var network = new Libp2pKadNetwork(host);
            var dht = new KadDht(host.PeerId, network, new KadDhtOptions
            {
                Mode = mode,
                Validators = RecordValidators.WithDefaults()
                    .Add(SpanRecordValidator.Namespace, new SpanRecordValidator())
                    .Add(MeshNamespace, new OpaqueRecordValidator()),
            });
            beforeListening?.Invoke(host);
            await host.StartAsync(listen.Select(Multiaddr.Parse), cancellation).ConfigureAwait(false);
            network.Attach(dht);
            var seeds = bootstrap.Select(Multiaddr.Parse).Select(a => a.PeerId is null
                ? throw new MeshException(MeshErrorCode.InvalidArgument, $"bootstrap address {a} has no /p2p/ peer id")
                : KadPeer.FromMultiaddr(a)).ToList();
            if (seeds.Count > 0)
            {
                try
                {
                    await dht.BootstrapAsync(seeds, cancellation).ConfigureAwait(false);
                    log($"joined the DHT: {dht.RoutingTable.Count} peers in the routing table");
                }
                catch (MeshException e)
                {
                    log($"could not join the DHT: {e.Message}");
                }
            }
            return new MeshPeer(host, dht, identity);
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Dht.DisposeAsync().ConfigureAwait(false);
        await Host.DisposeAsync().ConfigureAwait(false);
    }
}
