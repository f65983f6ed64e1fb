namespace InferenceMesh.P2P.Dht;

/// <summary>Settings of a <see cref="KadDht"/>, grouped; every one has a default (libp2p's, unless said).</summary>
public sealed record KadDhtOptions
{
    /// <summary>Protocol id of the public IPFS DHT (interop with js-libp2p / go-libp2p).</summary>
    public const string IpfsProtocolId = "/ipfs/kad/1.0.0";

    /// <summary>Protocol id of the mesh's own DHT (same messages).</summary>
    public const string MeshProtocolId = "/inferencemesh/kad/1.0.0";

    /// <summary>The protocol id the transport adapter speaks.</summary>
    public string ProtocolId { get; init; } = MeshProtocolId;

    /// <summary>Server or client mode.</summary>
    public DhtMode Mode { get; init; } = DhtMode.Server;

    /// <summary>Replication factor and result size k (20).</summary>
    public int K { get; init; } = 20;

    /// <summary>Concurrent requests per lookup α (3).</summary>
    public int Alpha { get; init; } = 3;

    /// <summary>Time allowed for one request and its response.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Pings per bootstrap peer before it counts as unreachable (3). A seed that is restarting, or that refuses a
    /// handshake because too many from one address are in flight (many clients behind one NAT, a local swarm),
    /// usually answers a moment later.
    /// </summary>
    public int BootstrapAttempts { get; init; } = 3;

    /// <summary>Wait before the second ping of a bootstrap peer (0.5 s); it doubles for each later one, plus up to half again at random so refused peers do not return in step.</summary>
    public TimeSpan BootstrapRetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Routing-table settings (bucket size should equal <see cref="K"/>).</summary>
    public RoutingTableOptions RoutingTable { get; init; } = new();

    /// <summary>Wire limits for decoding messages.</summary>
    public KadMessageLimits Limits { get; init; } = KadMessageLimits.Default;

    /// <summary>Validators by namespace; <c>/pk/</c> by default. Configure before the node starts.</summary>
    public RecordValidators Validators { get; init; } = RecordValidators.WithDefaults();

    /// <summary>Age after which a stored record is dropped (go-libp2p: 36 h).</summary>
    public TimeSpan MaxRecordAge { get; init; } = TimeSpan.FromHours(36);

    /// <summary>Lifetime of a provider record (48 h).</summary>
    public TimeSpan ProviderValidity { get; init; } = TimeSpan.FromHours(48);

    /// <summary>Interval at which this node re-announces what it provides (22 h).</summary>
    public TimeSpan ProviderRepublishInterval { get; init; } = TimeSpan.FromHours(22);

    /// <summary>Interval at which this node re-puts the records it published (1 h).</summary>
    public TimeSpan RecordRepublishInterval { get; init; } = TimeSpan.FromHours(1);

    /// <summary>Interval between routing-table refreshes (self lookup, then a random id per bucket) (10 min).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Period of the background maintenance loop (expiry, republish, refresh).</summary>
    public TimeSpan MaintenanceInterval { get; init; } = TimeSpan.FromMinutes(1);

    /// <summary>Deepest bucket refreshed with a random lookup (go-libp2p: 15).</summary>
    public int MaxRefreshCpl { get; init; } = 15;

    /// <summary>A member of a full bucket not heard from for this long is pinged when a newcomer knocks; evicted if silent.</summary>
    public TimeSpan StalePeerAge { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Most records stored for others.</summary>
    public int MaxRecords { get; init; } = 65_536;

    /// <summary>
    /// Most bytes (keys plus values) stored for others: 64 MiB. The count alone does not bound memory: 65,536 evidence
    /// chunks of 32 KiB each would be 2 GiB.
    /// </summary>
    public long MaxRecordBytes { get; init; } = 64L * 1024 * 1024;

    /// <summary>Most keys with provider records.</summary>
    public int MaxProviderKeys { get; init; } = 65_536;

    /// <summary>Most providers kept per key.</summary>
    public int MaxProvidersPerKey { get; init; } = 64;

    /// <summary>GET_VALUE stops after this many valid values (non-merging namespaces).</summary>
    public int GetValueQuorum { get; init; } = 3;

    /// <summary>The clock (virtual in the simulator).</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Seed for the random ids of bucket refresh; null for a random seed.</summary>
    public int? Seed { get; init; }
}
