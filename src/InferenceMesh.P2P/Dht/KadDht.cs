using System.Globalization;
using InferenceMesh.Core;
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
/// </summary>
public sealed class KadDht : IAsyncDisposable
{
    private sealed class Candidate(KadPeer peer, KadId id, int depth)
    {
        public readonly KadPeer Peer = peer;
        public readonly KadId Id = id;
        public readonly int Depth = depth;
        public int State; // 0 new, 1 waiting, 2 answered, 3 failed
        public bool Retried;
    }

    private sealed class LookupRun
    {
        public required List<Candidate> Order;
        public required Dictionary<PeerId, Candidate> ByPeer;
        public int Messages, Failures;
    }

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
        _records = new RecordStore(Options.MaxRecords);
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

    // ───────────────────────────── serving ─────────────────────────────

    /// <summary>
    /// Answers one inbound request from <paramref name="sender"/>; null for messages without a response
    /// (ADD_PROVIDER). <paramref name="senderIsServer"/> (the sender supports the DHT protocol, per Identify)
    /// decides whether it may enter the routing table. Throws <see cref="DhtException"/> for a request to
    /// refuse (the transport then resets the stream); the failure is counted in <see cref="Metrics"/>.
    /// </summary>
    public KadMessage? HandleRequest(KadPeer sender, bool senderIsServer, KadMessage request)
    {
        if (Options.Mode == DhtMode.Client)
            throw new DhtException(DhtErrorCode.InvalidMessage, "this node is a DHT client and answers no requests");
        var now = Now;
        if (senderIsServer)
            ConsiderPeer(sender, now);
        Metrics.RequestHandled();
        switch (request.Type)
        {
            case KadMessageType.Ping:
                return new KadMessage { Type = KadMessageType.Ping };
            case KadMessageType.FindNode:
                return new KadMessage { Type = KadMessageType.FindNode, Key = request.Key, CloserPeers = CloserPeers(request.Key, sender.Id) };
            case KadMessageType.GetValue:
            {
                RequireKey(request);
                var rec = GetLocalRecord(request.Key, now);
                return new KadMessage
                {
                    Type = KadMessageType.GetValue,
                    Key = request.Key,
                    Record = rec is null ? null : new KadRecord(rec.Key, rec.Value, Rfc3339(rec.ReceivedAt)),
                    CloserPeers = CloserPeers(request.Key, sender.Id),
                };
            }
            case KadMessageType.PutValue:
                RequireKey(request);
                if (request.Record is null)
                {
                    Metrics.InvalidMessage();
                    throw new DhtException(DhtErrorCode.InvalidMessage, "PUT_VALUE without a record");
                }
                if (!request.Record.Key.AsSpan().SequenceEqual(request.Key))
                {
                    Metrics.InvalidRecord();
                    throw new DhtException(DhtErrorCode.InvalidRecord, "PUT_VALUE record key differs from the message key");
                }
                StoreRecord(request.Key, request.Record.Value, now);
                return request;
            case KadMessageType.AddProvider:
                RequireKey(request);
                foreach (var p in request.ProviderPeers)
                {
                    if (p.Id != sender.Id)
                    {
                        Metrics.ProviderRejected();
                        continue;
                    }
                    var addrs = p.Addresses.Count > 0 ? p.Addresses : sender.Addresses;
                    if (addrs.Count > Options.RoutingTable.MaxAddressesPerPeer)
                        addrs = [.. addrs.Take(Options.RoutingTable.MaxAddressesPerPeer)];
                    if (!_providers.Add(request.Key, new KadPeer(p.Id, addrs), now + Options.ProviderValidity))
                        Metrics.ProviderRejected();
                }
                return null;
            case KadMessageType.GetProviders:
                RequireKey(request);
                return new KadMessage
                {
                    Type = KadMessageType.GetProviders,
                    Key = request.Key,
                    ProviderPeers = _providers.Get(request.Key, now, Options.K),
                    CloserPeers = CloserPeers(request.Key, sender.Id),
                };
            default:
                Metrics.InvalidMessage();
                throw new DhtException(DhtErrorCode.InvalidMessage, $"unsupported DHT message type {request.Type}");
        }
    }

    /// <summary>Counts a frame the transport refused before decoding (oversized or malformed).</summary>
    public void ReportRejectedFrame(DhtException error)
    {
        if (error.DhtCode == DhtErrorCode.LimitExceeded) Metrics.OversizedMessage();
        else Metrics.InvalidMessage();
    }

    private void RequireKey(KadMessage request)
    {
        if (request.Key.Length == 0)
        {
            Metrics.InvalidMessage();
            throw new DhtException(DhtErrorCode.InvalidMessage, $"{request.Type} without a key");
        }
    }

    private List<KadPeer> CloserPeers(byte[] key, PeerId exclude) =>
        RoutingTable.NearestKadPeers(KadId.FromKey(key), Options.K, exclude);

    private StoredRecord? GetLocalRecord(byte[] key, DateTimeOffset now)
    {
        var rec = _records.Get(key);
        if (rec is null)
            return null;
        if (rec.ReceivedAt + Options.MaxRecordAge <= now)
        {
            Metrics.ExpiredRecord();
            return null;
        }
        IRecordValidator v;
        try { v = Options.Validators.For(key); }
        catch (DhtException) { return null; }
        if (v is IMergingRecordValidator m)
        {
            var pruned = m.Merge(key, rec.Value, []);
            return pruned.Length == 0 ? null : rec with { Value = pruned };
        }
        return rec;
    }

    private void StoreRecord(byte[] key, byte[] value, DateTimeOffset now)
    {
        IRecordValidator v;
        try
        {
            v = Options.Validators.For(key);
            v.Validate(key, value);
        }
        catch (DhtException)
        {
            Metrics.InvalidRecord();
            throw;
        }
        var existing = GetLocalRecord(key, now);
        if (v is IMergingRecordValidator m)
            value = m.Merge(key, existing?.Value ?? [], value); // also drops the bad entries of a valid value
        else if (existing is not null)
        {
            if (!existing.Value.AsSpan().SequenceEqual(value) && v.Select(key, [value, existing.Value]) != 0)
                return; // keep the better record we hold
        }
        if (!_records.Put(new StoredRecord(key, value, now)))
            throw new DhtException(DhtErrorCode.LimitExceeded, $"record store full ({Options.MaxRecords} records)");
    }

    // ───────────────────────────── routing table ─────────────────────────────

    private void ConsiderPeer(KadPeer peer, DateTimeOffset now)
    {
        if (RoutingTable.TryAdd(peer.Id, peer.Addresses, now) != RoutingAddResult.BucketFull)
            return;
        var stalest = RoutingTable.StalestInFullBucket(peer.Id);
        if (stalest is null || now - stalest.LastSeen < Options.StalePeerAge)
            return;
        lock (_lock)
        {
            if (!_staleChecks.Add(stalest.Peer))
                return;
        }
        _ = CheckStalestAsync(stalest, peer);
    }

    private async Task CheckStalestAsync(RoutingEntry stalest, KadPeer candidate)
    {
        try
        {
            var ok = await PingAsync(new KadPeer(stalest.Peer, stalest.Addresses), CancellationToken.None);
            if (!ok)
            {
                RoutingTable.Remove(stalest.Peer);
                Metrics.Evicted();
                RoutingTable.TryAdd(candidate.Id, candidate.Addresses, Now);
            }
        }
        finally
        {
            lock (_lock) _staleChecks.Remove(stalest.Peer);
        }
    }

    /// <summary>Sends PING; true if the peer answered (and it is refreshed in the table). Safe to cancel.</summary>
    public async Task<bool> PingAsync(KadPeer peer, CancellationToken cancellationToken = default)
    {
        Metrics.RequestSent();
        try
        {
            var r = await _network.SendRequestAsync(peer, new KadMessage { Type = KadMessageType.Ping }, Options.RequestTimeout, cancellationToken);
            if (r.Type != KadMessageType.Ping)
                throw new DhtException(DhtErrorCode.InvalidMessage, "PING answered with another type");
            RoutingTable.MarkAlive(peer.Id, Now);
            return true;
        }
        catch (MeshException)
        {
            Metrics.RequestFailed();
            RoutingTable.MarkFailed(peer.Id, Now);
            return false;
        }
    }

    /// <summary>
    /// Joins the DHT: pings <paramref name="seeds"/> (those that answer enter the routing table), then
    /// refreshes (self lookup and a random lookup per bucket). Throws <see cref="DhtException"/> (NoPeers)
    /// when no seed answers and the table is empty. Safe to cancel.
    /// </summary>
    public async Task BootstrapAsync(IEnumerable<KadPeer> seeds, CancellationToken cancellationToken = default)
    {
        var list = seeds.Where(s => s.Id != Self).ToList();
        await Task.WhenAll(list.Select(s => PingForBootstrapAsync(s, cancellationToken)));
        if (RoutingTable.Count == 0)
            throw new DhtException(DhtErrorCode.NoPeers, $"none of {list.Count} bootstrap peers answered");
        await RefreshAsync(cancellationToken);
    }

    private async Task<bool> PingForBootstrapAsync(KadPeer seed, CancellationToken ct)
    {
        Metrics.RequestSent();
        try
        {
            await _network.SendRequestAsync(seed, new KadMessage { Type = KadMessageType.Ping }, Options.RequestTimeout, ct);
            RoutingTable.TryAdd(seed.Id, seed.Addresses, Now);
            return true;
        }
        catch (MeshException)
        {
            Metrics.RequestFailed();
            return false;
        }
    }

    /// <summary>Self lookup, then one lookup of a random id in each bucket up to the deepest non-empty one (at most <see cref="KadDhtOptions.MaxRefreshCpl"/>). Safe to cancel.</summary>
    public async Task RefreshAsync(CancellationToken cancellationToken = default)
    {
        lock (_lock) _lastRefresh = Now;
        await GetClosestPeersAsync(Self.ToBytes(), cancellationToken);
        var buckets = RoutingTable.NonEmptyBuckets();
        var maxCpl = Math.Min(buckets.Count == 0 ? 0 : buckets.Max(), Options.MaxRefreshCpl);
        for (var cpl = 0; cpl <= maxCpl; cpl++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await GetClosestPeersAsync(RefreshKeys.KeyWithPrefix(RoutingTable.SelfId, cpl, _random), cancellationToken);
        }
    }

    // ───────────────────────────── lookups ─────────────────────────────

    private async Task<LookupRun> LookupAsync(byte[] key, KadMessage request, Func<Candidate, KadMessage, bool>? onResponse, CancellationToken cancellationToken)
    {
        Metrics.LookupStarted();
        var target = KadId.FromKey(key);
        var run = new LookupRun { Order = [], ByPeer = [] };
        foreach (var p in RoutingTable.NearestKadPeers(target, Options.K))
            AddCandidate(run, target, p, 0);
        using var lookupCts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var inflight = new List<Task<(Candidate C, KadMessage? Response)>>(Options.Alpha);
        var stop = false;
        try
        {
            while (true)
            {
                if (!stop)
                {
                    var seen = 0;
                    foreach (var c in run.Order)
                    {
                        if (c.State == 3) continue;
                        if (++seen > Options.K || inflight.Count >= Options.Alpha) break;
                        if (c.State != 0) continue;
                        c.State = 1;
                        run.Messages++;
                        inflight.Add(QueryAsync(c, request, lookupCts.Token));
                    }
                }
                if (inflight.Count == 0 || stop)
                    break;
                var done = await Task.WhenAny(inflight);
                inflight.Remove(done);
                var (cand, response) = await done;
                if (response is null)
                {
                    run.Failures++;
                    // One retry absorbs a lost packet; a peer that fails twice is out of this lookup.
                    cand.State = cand.Retried ? 3 : 0;
                    cand.Retried = true;
                    continue;
                }
                cand.State = 2;
                foreach (var p in response.CloserPeers)
                    if (p.Id != Self && !run.ByPeer.ContainsKey(p.Id))
                        AddCandidate(run, target, p, cand.Depth + 1);
                if (onResponse?.Invoke(cand, response) == true)
                    stop = true;
            }
        }
        finally
        {
            if (inflight.Count > 0)
                lookupCts.Cancel();
        }
        cancellationToken.ThrowIfCancellationRequested();
        return run;
    }

    private static void AddCandidate(LookupRun run, KadId target, KadPeer peer, int depth)
    {
        var c = new Candidate(peer, KadId.FromPeer(peer.Id), depth);
        run.ByPeer[peer.Id] = c;
        var lo = 0;
        var hi = run.Order.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (target.CompareDistance(run.Order[mid].Id, c.Id) < 0) lo = mid + 1; else hi = mid;
        }
        run.Order.Insert(lo, c);
    }

    private async Task<(Candidate, KadMessage?)> QueryAsync(Candidate c, KadMessage request, CancellationToken ct)
    {
        Metrics.RequestSent();
        try
        {
            var r = await _network.SendRequestAsync(c.Peer, request, Options.RequestTimeout, ct);
            if (r.Type != request.Type)
                throw new DhtException(DhtErrorCode.InvalidMessage, $"{request.Type} answered with {r.Type}");
            // It answered, so it is a DHT server: it may enter the table (refreshing it if present).
            ConsiderPeer(c.Peer, Now);
            return (c, r);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return (c, null);
        }
        catch (MeshException)
        {
            Metrics.RequestFailed();
            RoutingTable.MarkFailed(c.Peer.Id, Now);
            return (c, null);
        }
    }

    private List<KadPeer> Answered(LookupRun run, out int hops)
    {
        var list = new List<KadPeer>(Options.K);
        hops = -1;
        foreach (var c in run.Order)
        {
            if (c.State != 2) continue;
            if (list.Count == 0) hops = c.Depth;
            list.Add(c.Peer);
            if (list.Count == Options.K) break;
        }
        return list;
    }

    /// <summary>The k peers closest to <paramref name="key"/> (by sha256) that answered a FIND_NODE lookup. Safe to cancel.</summary>
    public async Task<ClosestPeersResult> GetClosestPeersAsync(byte[] key, CancellationToken cancellationToken = default)
    {
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key }, null, cancellationToken);
        var peers = Answered(run, out var hops);
        return new ClosestPeersResult(peers, new LookupStats(run.Messages, run.Failures, hops));
    }

    /// <summary>
    /// Finds <paramref name="peer"/>'s addresses: from the routing table when there (0 hops), else by a
    /// FIND_NODE lookup that stops once the peer itself has answered. Safe to cancel.
    /// </summary>
    public async Task<FindPeerResult> FindPeerAsync(PeerId peer, CancellationToken cancellationToken = default)
    {
        if (RoutingTable.Find(peer) is { } e)
            return new FindPeerResult(new KadPeer(e.Peer, e.Addresses), new LookupStats(0, 0, 0));
        var key = peer.ToBytes();
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.FindNode, Key = key },
            (c, _) => c.Peer.Id == peer, cancellationToken);
        if (run.ByPeer.TryGetValue(peer, out var found) && found.State == 2)
            return new FindPeerResult(found.Peer, new LookupStats(run.Messages, run.Failures, found.Depth));
        return new FindPeerResult(null, new LookupStats(run.Messages, run.Failures, -1));
    }

    /// <summary>
    /// Stores a record at the k closest peers (and locally in server mode) after validating it, and
    /// remembers it for republishing every <see cref="KadDhtOptions.RecordRepublishInterval"/> when
    /// <paramref name="republish"/>. Returns how many peers stored it. Throws <see cref="DhtException"/>
    /// (InvalidRecord, UnknownNamespace). Safe to cancel.
    /// </summary>
    public async Task<int> PutValueAsync(byte[] key, byte[] value, bool republish = true, CancellationToken cancellationToken = default)
    {
        Options.Validators.For(key).Validate(key, value);
        var now = Now;
        if (Options.Mode == DhtMode.Server)
            StoreRecord(key, value, now);
        if (republish)
            lock (_lock) _published[Convert.ToHexString(key)] = (key, value, now);
        var closest = await GetClosestPeersAsync(key, cancellationToken);
        var put = new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = new KadRecord(key, value, Rfc3339(now)) };
        var oks = await Task.WhenAll(closest.Peers.Select(p => TrySendAsync(p, put, true, cancellationToken)));
        return oks.Count(x => x);
    }

    private async Task<bool> TrySendAsync(KadPeer peer, KadMessage message, bool expectResponse, CancellationToken ct)
    {
        Metrics.RequestSent();
        try
        {
            if (expectResponse)
                await _network.SendRequestAsync(peer, message, Options.RequestTimeout, ct);
            else
                await _network.SendMessageAsync(peer, message, Options.RequestTimeout, ct);
            return true;
        }
        catch (MeshException)
        {
            Metrics.RequestFailed();
            return false;
        }
    }

    /// <summary>
    /// Looks a record up: the local copy plus GET_VALUE answers, each validated (invalid ones are counted and
    /// dropped), until <see cref="KadDhtOptions.GetValueQuorum"/> values (merging namespaces: until the lookup
    /// ends) ; then the selector's best (or the merge of all) is returned, and peers that returned a worse
    /// value are sent the best. Safe to cancel.
    /// </summary>
    public async Task<GetValueResult> GetValueAsync(byte[] key, CancellationToken cancellationToken = default)
    {
        var validator = Options.Validators.For(key);
        var merging = validator as IMergingRecordValidator;
        var values = new List<byte[]>();
        var from = new List<(KadPeer Peer, byte[] Value)>();
        var hops = -1;
        if (GetLocalRecord(key, Now) is { } local)
        {
            values.Add(local.Value);
            hops = 0;
        }
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.GetValue, Key = key }, (c, resp) =>
        {
            if (resp.Record is not { } rec || !rec.Key.AsSpan().SequenceEqual(key))
                return false;
            try
            {
                validator.Validate(key, rec.Value);
            }
            catch (DhtException)
            {
                Metrics.InvalidRecord();
                return false;
            }
            if (merging is not null)
            {
                var pruned = merging.Merge(key, rec.Value, []);
                if (pruned.Length == 0) return false;
                rec = rec with { Value = pruned };
            }
            values.Add(rec.Value);
            from.Add((c.Peer, rec.Value));
            if (hops < 0) hops = c.Depth + 1;
            return merging is null && values.Count >= Options.GetValueQuorum;
        }, cancellationToken);
        var stats = new LookupStats(run.Messages, run.Failures, hops);
        if (values.Count == 0)
            return new GetValueResult(null, stats);
        byte[] best;
        if (merging is not null)
        {
            best = values[0];
            for (var i = 1; i < values.Count; i++) best = merging.Merge(key, best, values[i]);
            return new GetValueResult(best, stats);
        }
        best = values[validator.Select(key, values)];
        var stale = from.Where(f => !f.Value.AsSpan().SequenceEqual(best)).Select(f => f.Peer).ToList();
        if (stale.Count > 0)
        {
            var put = new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = new KadRecord(key, best, Rfc3339(Now)) };
            await Task.WhenAll(stale.Select(p => TrySendAsync(p, put, true, cancellationToken)));
        }
        return new GetValueResult(best, stats);
    }

    /// <summary>
    /// Announces this node as a provider of <paramref name="key"/> to the k closest peers (and records it
    /// locally in server mode); re-announced every <see cref="KadDhtOptions.ProviderRepublishInterval"/>.
    /// Returns how many peers were sent the announcement. Safe to cancel.
    /// </summary>
    public async Task<int> ProvideAsync(byte[] key, CancellationToken cancellationToken = default)
    {
        var now = Now;
        lock (_lock) _provided[Convert.ToHexString(key)] = (key, now);
        if (Options.Mode == DhtMode.Server)
            _providers.Add(key, SelfPeer, now + Options.ProviderValidity);
        var closest = await GetClosestPeersAsync(key, cancellationToken);
        var msg = new KadMessage { Type = KadMessageType.AddProvider, Key = key, ProviderPeers = [SelfPeer] };
        var oks = await Task.WhenAll(closest.Peers.Select(p => TrySendAsync(p, msg, false, cancellationToken)));
        return oks.Count(x => x);
    }

    /// <summary>Finds up to <paramref name="max"/> providers of <paramref name="key"/>: local ones, then a GET_PROVIDERS lookup that stops once enough are known. Safe to cancel.</summary>
    public async Task<FindProvidersResult> FindProvidersAsync(byte[] key, int max = 20, CancellationToken cancellationToken = default)
    {
        var found = new Dictionary<PeerId, KadPeer>();
        var hops = -1;
        foreach (var p in _providers.Get(key, Now, max))
        {
            found.TryAdd(p.Id, p);
            hops = 0;
        }
        if (found.Count >= max)
            return new FindProvidersResult([.. found.Values], new LookupStats(0, 0, 0));
        var run = await LookupAsync(key, new KadMessage { Type = KadMessageType.GetProviders, Key = key }, (c, resp) =>
        {
            foreach (var p in resp.ProviderPeers)
            {
                if (found.TryAdd(p.Id, p) && hops < 0)
                    hops = c.Depth + 1;
            }
            return found.Count >= max;
        }, cancellationToken);
        return new FindProvidersResult([.. found.Values.Take(max)], new LookupStats(run.Messages, run.Failures, hops));
    }

    // ───────────────────────────── maintenance ─────────────────────────────

    /// <summary>
    /// One maintenance pass: drops expired records and provider records, republishes this node's records and
    /// provider announcements that are due, and refreshes the routing table when
    /// <see cref="KadDhtOptions.RefreshInterval"/> has passed. Safe to cancel.
    /// </summary>
    public async Task RunMaintenanceAsync(CancellationToken cancellationToken = default)
    {
        var now = Now;
        var expired = _records.Expire(now - Options.MaxRecordAge) + _providers.Expire(now);
        if (expired > 0) Metrics.ExpiredRecord(expired);
        List<(byte[] Key, byte[] Value)> republish;
        List<byte[]> reprovide;
        lock (_lock)
        {
            republish = [.. _published.Values.Where(p => now - p.At >= Options.RecordRepublishInterval).Select(p => (p.Key, p.Value))];
            reprovide = [.. _provided.Values.Where(p => now - p.At >= Options.ProviderRepublishInterval).Select(p => p.Key)];
        }
        foreach (var (k, v) in republish)
            await PutValueAsync(k, v, true, cancellationToken);
        foreach (var k in reprovide)
            await ProvideAsync(k, cancellationToken);
        DateTimeOffset lastRefresh;
        lock (_lock) lastRefresh = _lastRefresh;
        if (now - lastRefresh >= Options.RefreshInterval && RoutingTable.Count > 0)
            await RefreshAsync(cancellationToken);
    }

    /// <summary>Stops republishing <paramref name="key"/> (a record or a provided key).</summary>
    public void Forget(byte[] key)
    {
        var k = Convert.ToHexString(key);
        lock (_lock) { _published.Remove(k); _provided.Remove(k); }
    }

    /// <summary>Starts the background loop that runs <see cref="RunMaintenanceAsync"/> every <see cref="KadDhtOptions.MaintenanceInterval"/> (errors are swallowed and retried next period). Idempotent.</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_loop is not null) return;
            _loopCts = new CancellationTokenSource();
            var ct = _loopCts.Token;
            _loop = Task.Run(async () =>
            {
                while (!ct.IsCancellationRequested)
                {
                    try
                    {
                        await RunMaintenanceAsync(ct);
                        await Task.Delay(Options.MaintenanceInterval, Options.Time, ct);
                    }
                    catch (OperationCanceledException) when (ct.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (MeshException)
                    {
                        // a failed refresh (e.g. no peers yet) is retried next period
                    }
                }
            }, CancellationToken.None);
        }
    }

    /// <summary>Stops the background loop. Not safe to cancel.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_lock)
        {
            loop = _loop;
            _loopCts?.Cancel();
        }
        if (loop is not null)
        {
            try { await loop.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        _loopCts?.Dispose();
    }

    /// <summary>RFC 3339 text of a time, as <c>timeReceived</c> carries it.</summary>
    public static string Rfc3339(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
