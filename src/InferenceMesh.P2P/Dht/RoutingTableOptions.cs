namespace InferenceMesh.P2P.Dht;

/// <summary>Routing-table settings.</summary>
public sealed record RoutingTableOptions
{
    /// <summary>Bucket size k (libp2p: 20).</summary>
    public int BucketSize { get; init; } = 20;

    /// <summary>Most peers of one IPv4 /24 (IPv6 /48) in one bucket (go-libp2p-kbucket's diversity filter: 2).</summary>
    public int MaxPerIpGroupPerBucket { get; init; } = 2;

    /// <summary>Most peers of one IPv4 /24 (IPv6 /48) in the whole table.</summary>
    public int MaxPerIpGroupPerTable { get; init; } = 10;

    /// <summary>Loopback and link-local addresses escape the per-group caps (local tests, one-machine meshes).</summary>
    public bool ExemptLoopback { get; init; } = true;

    /// <summary>Consecutive unanswered requests after which a peer is evicted.</summary>
    public int MaxConsecutiveFailures { get; init; } = 2;

    /// <summary>Candidates remembered per full bucket, promoted when a member is evicted.</summary>
    public int ReplacementCacheSize { get; init; } = 20;

    /// <summary>Most addresses stored per peer.</summary>
    public int MaxAddressesPerPeer { get; init; } = 8;
}
