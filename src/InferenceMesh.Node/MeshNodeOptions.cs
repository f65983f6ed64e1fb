using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.Node;

/// <summary>Everything a <see cref="MeshNode"/> needs to join a mesh and serve blocks, grouped; every member has a default.</summary>
public sealed record MeshNodeOptions
{
    /// <summary>The node's identity; a fresh key when null and <see cref="IdentityFile"/> is null too. The caller keeps ownership.</summary>
    public Ed25519KeyPair? Identity { get; init; }

    /// <summary>An Ed25519 key file, created with mode 0600 when missing; used when <see cref="Identity"/> is null.</summary>
    public string? IdentityFile { get; init; }

    /// <summary>Addresses to listen on; an unspecified IP (<c>0.0.0.0</c>) is announced as this machine's interface addresses.</summary>
    public IReadOnlyList<Multiaddr> Listen { get; init; } = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")];

    /// <summary>Peers to join through, with <c>/p2p/</c>; none for the first node of a mesh.</summary>
    public IReadOnlyList<Multiaddr> Bootstrap { get; init; } = [];

    /// <summary>A split model directory (manifest.json) to serve blocks of; null for a node that only routes the DHT (a bootstrap node).</summary>
    public string? ModelDirectory { get; init; }

    /// <summary>Blocks to serve; must fall on stage boundaries. Null: choose by Petals' rule over what the DHT lists.</summary>
    public BlockRange? Blocks { get; init; }

    /// <summary>With <see cref="Blocks"/> null, how many blocks to serve; null serves every block.</summary>
    public int? BlockCount { get; init; }

    /// <summary>What runs the blocks.</summary>
    public ExecutorKind Executor { get; init; } = ExecutorKind.Auto;

    /// <summary>ONNX Runtime threads per stage run (0: one per core); 1 suits several nodes on one machine.</summary>
    public int Threads { get; init; } = 1;

    /// <summary>Session, KV-cache and queue limits of the stage server.</summary>
    public NodeOptions Limits { get; init; } = new();

    /// <summary>Emulated one-way delay added to every stage stream this node sends on (user space: tests and benchmarks).</summary>
    public TimeSpan LinkDelay { get; init; }

    /// <summary>Lifetime of the node's span announcements (re-announced every half of it); a node killed without a goodbye leaves listings when it lapses.</summary>
    public TimeSpan AnnounceTtl { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>How long shutdown tries to announce the node offline.</summary>
    public TimeSpan OfflineAnnounceTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Where to serve Prometheus metrics over HTTP, e.g. <c>http://127.0.0.1:9464/metrics/</c> (an HttpListener prefix:
    /// host, port and path ending in '/'); null for none. Only a node with a model has metrics.
    /// </summary>
    public Uri? MetricsUrl { get; init; }

    /// <summary>A lie this node tells, for verification tests only: refused unless <see cref="StageFault.AllowVariable"/> is 1.</summary>
    public StageFault? Fault { get; init; }

    /// <summary>Act as a Circuit Relay v2 relay for private peers with these limits (a publicly reachable node); null for none.</summary>
    public P2P.Relay.RelayServiceOptions? Relay { get; init; }

    /// <summary>The node cannot be dialled (behind a NAT): reserve on relays and announce <c>/p2p-circuit</c> addresses (<see cref="P2P.Mesh.MeshPeerOptions.Private"/>).</summary>
    public bool Private { get; init; }

    /// <summary>Relays (with <c>/p2p/</c>) a private node reserves on; the DHT's relays when empty.</summary>
    public IReadOnlyList<Multiaddr> Relays { get; init; } = [];

    /// <summary>Try DCUtR hole punching on relayed connections.</summary>
    public bool HolePunching { get; init; } = true;

    /// <summary>Transports for the host; TCP when null (tests use the in-memory transport).</summary>
    public IReadOnlyList<ITransport>? Transports { get; init; }

    /// <summary>Clock for the DHT and the node's timers.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Receives one line per notable event (span chosen, serving, stopping); null for none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Ask the home gateway to forward the listen port (UPnP IGD, NAT-PMP, PCP, <see cref="P2P.Nat.PortMapper"/>) and announce the
    /// mapped address; null (the default) for none. Only a non-loopback TCP listen address is mapped.
    /// </summary>
    public P2P.Nat.PortMapperOptions? PortMapping { get; init; }

    /// <summary>Called (on a pool thread) for each address the node learns: mapped, unmapped, observed by a peer. Subscribed before the node starts.</summary>
    public Action<P2P.Mesh.LearnedAddress>? AddressLearned { get; init; }

    /// <summary>AutoNAT limits as a server and confirmations needed as a client (<see cref="P2P.Nat.AutoNatService"/>).</summary>
    public P2P.Nat.AutoNatOptions AutoNat { get; init; } = new();

    /// <summary>How often the node asks its peers with AutoNAT whether it is publicly reachable; null (the default) never.</summary>
    public TimeSpan? ReachabilityCheckInterval { get; init; }

    /// <summary>Called (on a pool thread) when AutoNAT's verdict changes. Subscribed before the node starts.</summary>
    public Action<P2P.Nat.Reachability>? ReachabilityChanged { get; init; }
}
