namespace InferenceMesh.P2P.Dht;

/// <summary>Limits applied when decoding a kad-dht message from the wire.</summary>
public sealed record KadMessageLimits
{
    /// <summary>Largest message accepted, in bytes (length prefix excluded). go-libp2p uses 4 MiB; the mesh needs far less.</summary>
    public int MaxMessageSize { get; init; } = 1024 * 1024;

    /// <summary>Most entries in closerPeers plus providerPeers.</summary>
    public int MaxPeers { get; init; } = 100;

    /// <summary>Most addresses kept per listed peer (the rest are dropped).</summary>
    public int MaxAddressesPerPeer { get; init; } = 16;

    /// <summary>Longest key, in bytes.</summary>
    public int MaxKeyLength { get; init; } = 1024;

    /// <summary>The defaults.</summary>
    public static KadMessageLimits Default { get; } = new();
}
