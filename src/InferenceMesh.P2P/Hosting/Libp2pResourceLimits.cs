namespace InferenceMesh.P2P.Hosting;

/// <summary>
/// Budgets a <see cref="Libp2pHost"/> holds strangers to, scoped like go-libp2p's resource manager: the transient
/// scope (inbound connections not yet upgraded, globally and per IP address and subnet), the connection scope
/// (memory reserved per connection against a host budget, a deadline on the first stream), the peer scope
/// (connections per PeerId) and the protocol scope (inbound streams per protocol). Streams per connection are
/// <see cref="Muxing.YamuxOptions.MaxConcurrentStreams"/>; the deadline on the whole upgrade is
/// <see cref="Libp2pHostOptions.HandshakeTimeout"/> and the total of connections <see cref="Libp2pHostOptions.MaxConnections"/>.
/// A connection over a limit is refused or closed with one log line and counted in <see cref="Libp2pHost.Usage"/>;
/// established connections and their streams are never closed to make room for a newcomer's limit.
/// </summary>
public sealed record Libp2pResourceLimits
{
    /// <summary>Inbound connections accepted but not yet upgraded (multistream, Noise, Yamux), over all addresses.</summary>
    public int MaxPendingInbound { get; init; } = 128;

    /// <summary>Inbound connections not yet upgraded from one IP address.</summary>
    public int MaxPendingInboundPerIp { get; init; } = 8;

    /// <summary>Inbound connections not yet upgraded from one subnet (see <see cref="SubnetPrefixV4"/>, <see cref="SubnetPrefixV6"/>).</summary>
    public int MaxPendingInboundPerSubnet { get; init; } = 32;

    /// <summary>Prefix length of the IPv4 subnet a pending-connection budget is shared by (default /24).</summary>
    public int SubnetPrefixV4 { get; init; } = 24;

    /// <summary>Prefix length of the IPv6 subnet a pending-connection budget is shared by (default /56).</summary>
    public int SubnetPrefixV6 { get; init; } = 56;

    /// <summary>Upgraded connections with one remote PeerId, both directions together; one more inbound is closed.</summary>
    public int MaxConnectionsPerPeer { get; init; } = 8;

    /// <summary>
    /// An inbound connection whose remote opens no stream this long after the upgrade is closed (default 10 s;
    /// every libp2p peer opens Identify at once). <see cref="Timeout.InfiniteTimeSpan"/> turns the check off.
    /// </summary>
    public TimeSpan FirstStreamTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Inbound streams of one protocol open at once over all connections; one more is reset after negotiation.</summary>
    public int MaxInboundStreamsPerProtocol { get; init; } = 4096;

    /// <summary>
    /// Bytes reserved for each connection from accept (or dial) to close (default 320 KiB: the transport's
    /// read and write buffers and Noise's message buffers); a connection that does not fit in
    /// <see cref="MaxConnectionMemory"/> is refused.
    /// </summary>
    public long MemoryPerConnection { get; init; } = 320 * 1024;

    /// <summary>Bytes all connections may reserve together (default 256 MiB).</summary>
    public long MaxConnectionMemory { get; init; } = 256L * 1024 * 1024;

    internal void Validate()
    {
        if (MaxPendingInbound < 1 || MaxPendingInboundPerIp < 1 || MaxPendingInboundPerSubnet < 1 || MaxConnectionsPerPeer < 1 || MaxInboundStreamsPerProtocol < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxPendingInbound), "connection and stream limits must be positive");
        if (SubnetPrefixV4 is < 0 or > 32 || SubnetPrefixV6 is < 0 or > 128)
            throw new ArgumentOutOfRangeException(nameof(SubnetPrefixV4), "subnet prefixes must fit the address family");
        if (MemoryPerConnection < 0 || MaxConnectionMemory < MemoryPerConnection)
            throw new ArgumentOutOfRangeException(nameof(MaxConnectionMemory), "the memory budget must hold at least one connection");
        if (FirstStreamTimeout <= TimeSpan.Zero && FirstStreamTimeout != Timeout.InfiniteTimeSpan)
            throw new ArgumentOutOfRangeException(nameof(FirstStreamTimeout), "must be positive or Timeout.InfiniteTimeSpan");
    }
}
