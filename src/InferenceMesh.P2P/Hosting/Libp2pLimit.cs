namespace InferenceMesh.P2P.Hosting;

/// <summary>Which budget of <see cref="Libp2pResourceLimits"/> (or of the host's options) refused or closed a connection or stream.</summary>
public enum Libp2pLimit
{
    /// <summary><see cref="Libp2pResourceLimits.MaxPendingInbound"/>.</summary>
    PendingInbound,

    /// <summary><see cref="Libp2pResourceLimits.MaxPendingInboundPerIp"/>.</summary>
    PendingInboundPerIp,

    /// <summary><see cref="Libp2pResourceLimits.MaxPendingInboundPerSubnet"/>.</summary>
    PendingInboundPerSubnet,

    /// <summary><see cref="Libp2pResourceLimits.MaxConnectionMemory"/>.</summary>
    ConnectionMemory,

    /// <summary><see cref="Libp2pHostOptions.HandshakeTimeout"/>: the upgrade did not finish in time.</summary>
    UpgradeTimeout,

    /// <summary><see cref="Libp2pResourceLimits.FirstStreamTimeout"/>.</summary>
    FirstStreamTimeout,

    /// <summary><see cref="Libp2pHostOptions.MaxConnections"/>.</summary>
    Connections,

    /// <summary><see cref="Libp2pResourceLimits.MaxConnectionsPerPeer"/>.</summary>
    ConnectionsPerPeer,

    /// <summary><see cref="Muxing.YamuxOptions.MaxConcurrentStreams"/>: streams on one connection.</summary>
    StreamsPerConnection,

    /// <summary><see cref="Libp2pResourceLimits.MaxInboundStreamsPerProtocol"/>.</summary>
    StreamsPerProtocol,
}
