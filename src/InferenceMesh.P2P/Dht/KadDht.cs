using System.Globalization;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// A Kademlia DHT node speaking libp2p kad-dht messages over an <see cref="IKadNetwork"/>: iterative α-parallel
/// lookups that end when the k closest peers seen have answered; FIND_NODE, GET/PUT_VALUE with validators,
/// ADD_PROVIDER/GET_PROVIDERS, PING; expiry, republish and routing-table refresh in
/// <see cref="RunMaintenanceAsync"/> (run periodically by <see cref="Start"/>). Thread-safe.
/// <para>
/// Awaits in this class deliberately keep the caller's <see cref="SynchronizationContext"/>: the simulator
/// installs a single-threaded one to run thousands of nodes deterministically in virtual time. Without a
/// context (servers, console apps) continuations run on the thread pool as usual.
/// </para>
/// <para>
/// The parts: <c>KadDht.Serving.cs</c> answers inbound requests, <c>KadDht.Routing.cs</c> keeps the routing table
/// (ping, bootstrap, refresh), <c>KadDht.Lookups.cs</c> runs iterative lookups, <c>KadDht.Records.cs</c> puts and gets
/// values and provider records, <c>KadDht.Maintenance.cs</c> expires, republishes and runs the background loop.
/// </para>
/// </summary>
public sealed partial class KadDht : IAsyncDisposable
{
    private readonly IKadNetwork _network;
    private readonly RecordStore _records;
    private readonly ProviderStore _providers;
    private readonly Random _random;
    private readonly object _lock = new();
    private readonly Dictionary<string, (byte[] Key, byte[] Value, DateTimeOffset At)> _published = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (byte[] Key, DateTimeOffset At)> _provided = new(StringComparer.Ordinal);
    private readonly HashSet<PeerId> _staleChecks = [];
    private DateTimeOffset _lastRefresh = DateTimeOffset.MinValue;
    private CancellationTokenSource? _loopCts;
    private Task? _loop;

    public KadDht(PeerId self, IKadNetwork network, KadDhtOptions? options = null)
    {
        Self = self;
        _network = network;
        Options = options ?? new();
        Metrics = new DhtMetrics();
        RoutingTable = new RoutingTable(self, Options.RoutingTable, Metrics);
        _records = new RecordStore(Options.MaxRecords, Options.MaxRecordBytes);
        _providers = new ProviderStore(Options.MaxProviderKeys, Options.MaxProvidersPerKey);
        _random = Options.Seed is { } s ? new Random(s) : new Random();
    }

    /// <summary>The local peer.</summary>
    public PeerId Self { get; }

    /// <summary>The settings.</summary>
    public KadDhtOptions Options { get; }

    /// <summary>Counters, including every rejection.</summary>
    public DhtMetrics Metrics { get; }

    /// <summary>The k-buckets.</summary>
    public RoutingTable RoutingTable { get; }

    /// <summary>Records held for others.</summary>
    public RecordStore Records => _records;

    /// <summary>Provider records held for others.</summary>
    public ProviderStore Providers => _providers;

    /// <summary>This node's addresses as it announces them (provider records). Set by the host when its listen addresses change.</summary>
    public IReadOnlyList<Multiaddr> LocalAddresses { get; set; } = [];

    private DateTimeOffset Now => Options.Time.GetUtcNow();

    private KadPeer SelfPeer => new(Self, LocalAddresses);

    /// <summary>RFC 3339 text of a time, as <c>timeReceived</c> carries it.</summary>
    public static string Rfc3339(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
