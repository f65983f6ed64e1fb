using System.Buffers;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Hosting;

/// <summary>Settings of a <see cref="Libp2pHost"/>, grouped; every limit has a default.</summary>
public sealed record Libp2pHostOptions
{
    /// <summary>The node's identity. The host does not dispose it.</summary>
    public required Ed25519KeyPair Identity { get; init; }

    /// <summary>Transports, tried in order for dialing and listening; TCP when null.</summary>
    public IReadOnlyList<ITransport>? Transports { get; init; }

    /// <summary>Yamux limits for every connection.</summary>
    public YamuxOptions Yamux { get; init; } = new();

    /// <summary>List <c>/yamux/1.0.0</c> in the Noise handshake (early muxer negotiation). When false an empty list is sent and, if the remote's is empty too, the muxer is negotiated over multistream.</summary>
    public bool EarlyMuxerNegotiation { get; init; } = true;

    /// <summary>Time from transport connect to a ready muxer (multistream, Noise, muxer choice).</summary>
    public TimeSpan HandshakeTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Time for multistream-select on a new stream.</summary>
    public TimeSpan StreamNegotiationTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Most connections at once (both directions). A new connection at the limit first closes the one that has
    /// carried no stream the longest (for at least a second, so one just set up keeps its chance to open its
    /// first stream); when every connection is busy, an inbound one is refused and an outbound one goes over.
    /// </summary>
    public int MaxConnections { get; init; } = 256;

    /// <summary>
    /// A connection that carries no stream for this long is closed (default 1 minute), so peers met once (a
    /// DHT lookup) do not hold a slot for good; <see cref="Timeout.InfiniteTimeSpan"/> keeps idle connections.
    /// </summary>
    public TimeSpan IdleConnectionTimeout { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Budgets for connections not yet upgraded, per peer, per protocol and in memory; see <see cref="Libp2pResourceLimits"/>.</summary>
    public Libp2pResourceLimits Limits { get; init; } = new();

    /// <summary>
    /// Try DCUtR hole punching (<c>/libp2p/dcutr</c>) on every inbound relayed connection, and answer peers that try
    /// it, so relayed peers end up directly connected where the NATs allow. TCP listeners then bind with
    /// SO_REUSEADDR/SO_REUSEPORT so the punch can dial from the listen port.
    /// </summary>
    public bool HolePunching { get; init; } = true;

    /// <summary>Run Identify on every new connection.</summary>
    public bool AutoIdentify { get; init; } = true;

    /// <summary>Identify's agentVersion.</summary>
    public string AgentVersion { get; init; } = "inferencemesh/0.1.0";

    /// <summary>Identify's protocolVersion.</summary>
    public string ProtocolVersion { get; init; } = "ipfs/0.1.0";

    /// <summary>Largest Identify message accepted, in bytes.</summary>
    public int MaxIdentifyMessage { get; init; } = 64 * 1024;

    /// <summary>Buffer pool for every pipe; <see cref="MemoryPool{T}.Shared"/> when null.</summary>
    public MemoryPool<byte>? Pool { get; init; }

    /// <summary>Receives one line per rejected or failed connection and handler error; null for none.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// The clock behind every time-based decision of the host: idle-connection closing and trimming, and the
    /// handshake, stream-negotiation and Identify timeouts (also given to Yamux when <see cref="YamuxOptions.Time"/> is null).
    /// </summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;
}
