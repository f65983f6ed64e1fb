using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Relay;
using InferenceMesh.P2P.Nat;

namespace InferenceMesh.P2P.Mesh;

/// <summary>
/// A started mesh peer: a libp2p host, the mesh's Kademlia DHT on <c>/inferencemesh/kad/1.0.0</c> with the
/// span-record validator, and the span directory over it. Joins through bootstrap peers and keeps the DHT
/// maintained (expiry, republish, refresh: <see cref="KadDht.Start"/>) until disposed. Both a serving node
/// and a client are built on one.
/// </summary>
public sealed class MeshPeer : IAsyncDisposable
{
    /// <summary>A free-form record namespace (<c>/mesh/…</c>) every mesh peer stores, for tools and tests.</summary>
    public const string MeshNamespace = "mesh";

    /// <summary>The DHT provider key relays announce themselves under, for private peers to find them.</summary>
    public static readonly byte[] RelayProviderKey = System.Text.Encoding.UTF8.GetBytes("/inferencemesh/relay/0.2.0");

    /// <summary>At most this many distinct observed addresses are reported; more would only come from peers making them up.</summary>
    private const int MaxObserved = 32;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<Multiaddr, byte> _observed = new();
    private readonly Action<string> _log;
    private PortMapper? _mapper;
    private readonly CancellationTokenSource _stopping = new();
    private Task _reachabilityChecks = Task.CompletedTask;

    private MeshPeer(Libp2pHost host, KadDht dht, MeshPeerOptions options, RelayService? relay)
    {
        Host = host;
        Dht = dht;
        RelayService = relay;
        _log = options.Log ?? (_ => { });
        Spans = new SpanDirectory(dht, options.Identity) { Ttl = options.AnnounceTtl, RefreshInterval = options.AnnounceTtl / 2 };
        FraudReports = new FraudReportDirectory(dht, options.Identity);
        if (options.AddressLearned is { } learned)
            AddressLearned += learned;
        host.AddressObserved += OnAddressObserved;
        AutoNat = new AutoNatService(host, options.AutoNat);
    }

    /// <summary>AutoNAT v1 on this peer's host: it serves dial-backs to others and checks this peer's own reachability.</summary>
    public AutoNatService AutoNat { get; }

    /// <summary>
    /// Checks reachability with AutoNAT every <paramref name="interval"/> (the first check after one interval, once peers are connected),
    /// sending the announced addresses; <see cref="AutoNatService.ReachabilityChanged"/> reports the verdicts. False when checks already run.
    /// </summary>
    public bool StartReachabilityChecks(TimeSpan interval)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(interval, TimeSpan.Zero);
        if (!_reachabilityChecks.IsCompleted)
            return false;
        _reachabilityChecks = CheckReachabilityAsync(interval, _stopping.Token);
        return true;
    }

    private async Task CheckReachabilityAsync(TimeSpan interval, CancellationToken cancellation)
    {
        try
        {
            while (true)
            {
                await Task.Delay(interval, Dht.Options.Time, cancellation).ConfigureAwait(false);
                await AutoNat.CheckAsync(AdvertisedAddresses, cancellation).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellation.IsCancellationRequested)
        {
        }
    }

    /// <summary>
    /// Raised (on a pool thread) for each address this peer learns after start: a port mapped on (or lost by) the home gateway,
    /// or an address a peer observed. Subscribe before <see cref="StartPortMapping"/> to see the first mapping.
    /// </summary>
    public event Action<LearnedAddress>? AddressLearned;

    /// <summary>The gateway port mapping in force, or null.</summary>
    public PortMapping? PortMapping => _mapper?.Current;

    public Libp2pHost Host { get; }

    /// <summary>The relay this peer runs (<see cref="MeshPeerOptions.Relay"/>), or null.</summary>
    public RelayService? RelayService { get; }
    public KadDht Dht { get; }
    public SpanDirectory Spans { get; }

    /// <summary>Fraud reports against servers, signed by this peer when it publishes one.</summary>
    public FraudReportDirectory FraudReports { get; }

    /// <summary>
    /// The addresses other peers can dial: the listen addresses, with an unspecified IP (<c>0.0.0.0</c>, <c>::</c>)
    /// replaced by this machine's interface addresses of that family. This is what span records and the DHT announce.
    /// </summary>
    public IReadOnlyList<Multiaddr> AdvertisedAddresses => Dht.LocalAddresses;

    /// <summary>Starts listening, joins the DHT through the bootstrap peers, and returns the peer. Safe to cancel.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.PeersUnreachable"/> when <see cref="MeshPeerOptions.RequireBootstrap"/> is set and no bootstrap peer answered.</exception>
    public static async Task<MeshPeer> StartAsync(MeshPeerOptions options, CancellationToken cancellation)
    {
        var log = options.Log ?? (_ => { });
        var spanValidator = new SpanRecordValidator(options.Time);
        if (options.AnnounceTtl < TimeSpan.FromSeconds(2) || options.AnnounceTtl > spanValidator.MaxTtl)
            throw new MeshException(MeshErrorCode.InvalidArgument,
                $"the announcement TTL must be between 2 s and {spanValidator.MaxTtl.TotalSeconds:F0} s (longer ones are refused by the DHT), not {options.AnnounceTtl.TotalSeconds} s");
        var seeds = options.Bootstrap.Select(a => a.PeerId is null
            ? throw new MeshException(MeshErrorCode.InvalidArgument, $"bootstrap address {a} has no /p2p/ peer id")
            : KadPeer.FromMultiaddr(a)).ToList();
        var host = new Libp2pHost(new Libp2pHostOptions { Identity = options.Identity, Log = options.Log, Transports = options.Transports, HolePunching = options.HolePunching });
        var relay = options.Relay is null ? null : RelayService.Attach(host, options.Relay);
        try
        {
            var network = new Libp2pKadNetwork(host);
            var dht = new KadDht(host.PeerId, network, new KadDhtOptions
            {
                // A peer nobody can dial cannot answer DHT queries (go-libp2p switches to client mode behind a NAT too).
                Mode = options.Private ? DhtMode.Client : options.Mode,
                Time = options.Time,
                Validators = RecordValidators.WithDefaults()
                    .Add(SpanRecordValidator.Namespace, spanValidator)
                    .Add(FraudRecordValidator.Namespace, new FraudRecordValidator(options.Time))
                    .Add(BlobRecordValidator.Namespace, new BlobRecordValidator())
                    .Add(MeshNamespace, new OpaqueRecordValidator()),
            });
            options.BeforeListening?.Invoke(host);
            await host.StartAsync(options.Listen, cancellation).ConfigureAwait(false);
            network.Attach(dht);
            dht.LocalAddresses = Advertised(host.ListenAddresses);
            // Made before joining, so the addresses peers observe during the join are reported too.
            var peer = new MeshPeer(host, dht, options, relay);
            if (seeds.Count > 0)
            {
                try
                {
                    await dht.BootstrapAsync(seeds, cancellation).ConfigureAwait(false);
                    log($"joined the DHT: {dht.RoutingTable.Count} peers in the routing table");
                }
                catch (MeshException e) when (!options.RequireBootstrap)
                {
                    log($"could not join the DHT: {e.Message}");
                }
                catch (MeshException e)
                {
                    await dht.DisposeAsync().ConfigureAwait(false);
                    throw new MeshException(MeshErrorCode.PeersUnreachable,
                        $"no bootstrap peer answered (tried {string.Join(", ", options.Bootstrap)}): {e.Message}", e);
                }
            }
            if (relay is not null)
                await AnnounceRelayAsync(dht, log, cancellation).ConfigureAwait(false);
            if (options.Private)
                await ReserveRelaysAsync(host, dht, options, log, cancellation).ConfigureAwait(false);
            dht.Start();
            return peer;
        }
        catch
        {
            await host.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static async Task AnnounceRelayAsync(KadDht dht, Action<string> log, CancellationToken cancellation)
    {
        try
        {
            var told = await dht.ProvideAsync(RelayProviderKey, cancellation).ConfigureAwait(false);
            log($"relay: announced to {told} peers");
        }
        catch (MeshException e)
        {
            log($"relay: could not announce in the DHT: {e.Message}");
        }
    }

    /// <summary>
    /// Reserves on the configured relays (else those the DHT lists) until <see cref="MeshPeerOptions.MaxRelays"/> hold a slot,
    /// and from then on announces the circuit addresses, following renewals and losses. A peer no relay takes keeps its
    /// listen addresses and says so in the log.
    /// </summary>
    private static async Task ReserveRelaysAsync(Libp2pHost host, KadDht dht, MeshPeerOptions options, Action<string> log, CancellationToken cancellation)
    {
        var candidates = options.Relays.ToList();
        if (candidates.Count == 0)
        {
            try
            {
                var found = await dht.FindProvidersAsync(RelayProviderKey, 8, cancellation).ConfigureAwait(false);
                candidates = [.. found.Providers.Where(p => p.Id != host.PeerId)
                    .SelectMany(p => p.Addresses.Where(a => !CircuitRelayClient.IsCircuit(a)).Take(1).Select(a => a.WithPeerId(p.Id)))];
            }
            catch (MeshException e)
            {
                log($"relay: no relay found in the DHT: {e.Message}");
            }
        }
        foreach (var relay in candidates)
        {
            if (host.Relay.Reservations.Count >= options.MaxRelays)
                break;
            try
            {
                var r = await host.Relay.ReserveAsync(relay, cancellation).ConfigureAwait(false);
                log($"relay: reserved on {r.Relay} until {r.Expires:O}");
            }
            catch (P2PException e)
            {
                log($"relay: reservation on {relay} failed: {e.P2PCode}: {e.Message}");
            }
        }
        void Announce()
        {
            var circuits = host.Relay.CircuitAddresses;
            dht.LocalAddresses = circuits.Count > 0 ? circuits : Advertised(host.ListenAddresses);
        }
        host.Relay.ReservationsChanged += Announce;
        Announce();
        if (host.Relay.Reservations.Count == 0)
            log("relay: private, but no relay took a reservation: announcing the listen addresses");
    }

    /// <summary>Replaces each unspecified IP listen address by one address per up interface address of that family (loopback included, so local swarms keep working).</summary>
    public static IReadOnlyList<Multiaddr> Advertised(IReadOnlyList<Multiaddr> listen)
    {
        var result = new List<Multiaddr>();
        foreach (var address in listen)
        {
            var endpoint = address.TryGetTcpEndPoint();
            if (endpoint is null || !endpoint.Address.Equals(IPAddress.Any) && !endpoint.Address.Equals(IPAddress.IPv6Any))
            {
                result.Add(address);
                continue;
            }
            foreach (var local in InterfaceAddresses(endpoint.AddressFamily))
                result.Add(Multiaddr.FromTcpEndPoint(new IPEndPoint(local, endpoint.Port)));
        }
        return result.Distinct().ToList();
    }

    private static IEnumerable<IPAddress> InterfaceAddresses(AddressFamily family) =>
        NetworkInterface.GetAllNetworkInterfaces()
            .Where(n => n.OperationalStatus is OperationalStatus.Up or OperationalStatus.Unknown)
            .SelectMany(n => n.GetIPProperties().UnicastAddresses)
            .Select(u => u.Address)
            .Where(a => a.AddressFamily == family && !a.IsIPv6LinkLocal)
            .OrderBy(a => IPAddress.IsLoopback(a) ? 1 : 0);

    /// <summary>
    /// Starts keeping the first non-loopback TCP listen port forwarded by the home gateway (<see cref="PortMapper"/>); each mapping
    /// is added to what Identify and the DHT announce and raised as <see cref="AddressLearned"/>. False when there is no such
    /// listen address or mapping already runs.
    /// </summary>
    public bool StartPortMapping(PortMapperOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var port = Host.ListenAddresses.Select(a => a.TryGetTcpEndPoint()).FirstOrDefault(e => e is not null && !IPAddress.IsLoopback(e.Address))?.Port;
        if (port is null || _mapper is not null)
            return false;
        var mapper = new PortMapper(port.Value, options with { Log = options.Log ?? _log });
        mapper.Changed += OnMappingChanged;
        _mapper = mapper;
        return true;
    }

    private void OnMappingChanged(PortMapping? old, PortMapping? current)
    {
        IReadOnlyList<Multiaddr> external = current is null ? [] : [current.ExternalMultiaddr];
        Host.SetExternalAddresses(external);
        Dht.LocalAddresses = [.. Advertised(Host.ListenAddresses), .. external];
        if (old is not null)
            AddressLearned?.Invoke(new LearnedAddress(LearnedAddressKind.Unmapped, old.ExternalMultiaddr, old.Protocol.ToString()));
        if (current is not null)
            AddressLearned?.Invoke(new LearnedAddress(LearnedAddressKind.Mapped, current.ExternalMultiaddr, current.Protocol.ToString()));
    }

    private void OnAddressObserved(Libp2pConnection connection, Multiaddr observed)
    {
        if (_observed.Count >= MaxObserved || !_observed.TryAdd(observed, 0))
            return;
        AddressLearned?.Invoke(new LearnedAddress(LearnedAddressKind.Observed, observed, connection.RemotePeer.ToString()));
    }

    /// <summary>Deletes the port mapping (if any), stops DHT maintenance and closes the host with its connections.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _reachabilityChecks.ConfigureAwait(false);
        _stopping.Dispose();
        if (_mapper is { } mapper)
        {
            mapper.Changed -= OnMappingChanged;
            await mapper.DisposeAsync().ConfigureAwait(false);
        }
        await Dht.DisposeAsync().ConfigureAwait(false);
        await Host.DisposeAsync().ConfigureAwait(false);
    }
}
