using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Relay;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Mesh;

/// <summary>How a <see cref="MeshPeer"/> joins the mesh: identity, addresses, bootstrap peers and DHT role.</summary>
public sealed record MeshPeerOptions
{
    /// <summary>The peer's identity; the caller keeps ownership and disposes it after the peer.</summary>
    public required Ed25519KeyPair Identity { get; init; }

    /// <summary>Addresses to listen on; none for a client that only dials out.</summary>
    public IReadOnlyList<Multiaddr> Listen { get; init; } = [];

    /// <summary>Peers to join through, each with <c>/p2p/&lt;peer id&gt;</c>.</summary>
    public IReadOnlyList<Multiaddr> Bootstrap { get; init; } = [];

    /// <summary>Server (answers DHT queries and stores records) or client (only asks).</summary>
    public DhtMode Mode { get; init; } = DhtMode.Client;

    /// <summary>
    /// Fail <see cref="MeshPeer.StartAsync"/> with <see cref="Core.MeshErrorCode.PeersUnreachable"/> when bootstrap
    /// peers were given and none answered. A client needs the mesh; a node may be the first of a new one.
    /// </summary>
    public bool RequireBootstrap { get; init; }

    /// <summary>Transports for the host; TCP when null (tests use the in-memory transport).</summary>
    public IReadOnlyList<ITransport>? Transports { get; init; }

    /// <summary>Clock for the host and the DHT (expiry, republish, idle connections).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Receives one line per notable event (joins, refused connections); null for none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Lifetime of this peer's span announcements (<see cref="SpanDirectory.Ttl"/>); they are refreshed every half of it.
    /// A server that dies without announcing itself offline drops out of listings when it lapses, so short values suit tests.
    /// </summary>
    public TimeSpan AnnounceTtl { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Act as a Circuit Relay v2 relay with these limits (a publicly reachable node), and say so in the DHT (provider of
    /// <see cref="MeshPeer.RelayProviderKey"/>) so private peers find it; null for no relaying.
    /// </summary>
    public RelayServiceOptions? Relay { get; init; }

    /// <summary>
    /// This peer cannot be dialled (behind a NAT): it reserves slots on relays (<see cref="Relays"/>, else up to
    /// <see cref="MaxRelays"/> found through the DHT), announces its <c>/p2p-circuit</c> addresses instead of its listen
    /// addresses, and runs the DHT in client mode whatever <see cref="Mode"/> says.
    /// </summary>
    public bool Private { get; init; }

    /// <summary>Relays (with <c>/p2p/</c>) a private peer reserves on; when empty it looks them up in the DHT.</summary>
    public IReadOnlyList<Multiaddr> Relays { get; init; } = [];

    /// <summary>How many relays a private peer holds reservations on.</summary>
    public int MaxRelays { get; init; } = 2;

    /// <summary>Try DCUtR hole punching on relayed connections (<see cref="Libp2pHostOptions.HolePunching"/>).</summary>
    public bool HolePunching { get; init; } = true;

    /// <summary>AutoNAT limits (as a server) and confirmations needed (as a client).</summary>
    public Nat.AutoNatOptions AutoNat { get; init; } = new();

    /// <summary>Called (on a pool thread) for each address the peer learns (<see cref="MeshPeer.AddressLearned"/>), from the bootstrap join on.</summary>
    public Action<LearnedAddress>? AddressLearned { get; init; }

    /// <summary>Registers protocol handlers on the host before it accepts connections.</summary>
    public Action<Libp2pHost>? BeforeListening { get; init; }
}
