using System.Net;
using System.Net.Sockets;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Kademlia k-buckets indexed by common-prefix length with the local id (256 buckets of at most k).
/// Long-lived peers are kept: a full bucket never drops a member for a newcomer; members leave only after
/// <see cref="RoutingTableOptions.MaxConsecutiveFailures"/> unanswered requests, and then the freshest
/// replacement candidate takes the place. Per IPv4 /24 (IPv6 /48) caps per bucket and per table keep a
/// flood of fake peers from one network out. Thread-safe.
/// </summary>
public sealed class RoutingTable
{
    private sealed class Entry
    {
        public required PeerId Peer;
        public required KadId Id;
        private IReadOnlyList<Multiaddr> _addresses = [];
        public KadPeer AsKadPeer = null!;
        public required IReadOnlyList<Multiaddr> Addresses
        {
            get => _addresses;
            set { _addresses = value; AsKadPeer = new KadPeer(Peer, value); }
        }
        public required string[] Groups;
        public DateTimeOffset AddedAt;
        public DateTimeOffset LastSeen;
        public int Failures;
        public RoutingEntry Snapshot() => new(Peer, Id, Addresses, AddedAt, LastSeen);
    }

    private readonly object _lock = new();
    private readonly List<Entry>[] _buckets = new List<Entry>[257];
    private readonly List<(PeerId Peer, IReadOnlyList<Multiaddr> Addrs)>[] _replacements = new List<(PeerId, IReadOnlyList<Multiaddr>)>[257];
    private readonly Dictionary<PeerId, Entry> _byPeer = [];
    private readonly Dictionary<string, int> _groupCount = new(StringComparer.Ordinal);
    private readonly DhtMetrics _metrics;

    public RoutingTable(PeerId self, RoutingTableOptions? options = null, DhtMetrics? metrics = null)
    {
        Self = self;
        SelfId = KadId.FromPeer(self);
        Options = options ?? new();
        _metrics = metrics ?? new();
        for (var i = 0; i < _buckets.Length; i++) { _buckets[i] = []; _replacements[i] = []; }
    }

    /// <summary>The local peer.</summary>
    public PeerId Self { get; }

    /// <summary>The local Kademlia id.</summary>
    public KadId SelfId { get; }

    /// <summary>The settings.</summary>
    public RoutingTableOptions Options { get; }

    /// <summary>Number of peers in the table.</summary>
    public int Count { get { lock (_lock) return _byPeer.Count; } }

    /// <summary>True when <paramref name="peer"/> is in the table.</summary>
    public bool Contains(PeerId peer) { lock (_lock) return _byPeer.ContainsKey(peer); }

    /// <summary>The entry of <paramref name="peer"/>, or null.</summary>
    public RoutingEntry? Find(PeerId peer) { lock (_lock) return _byPeer.TryGetValue(peer, out var e) ? e.Snapshot() : null; }

    /// <summary>Every entry, bucket by bucket.</summary>
    public IReadOnlyList<RoutingEntry> All()
    {
        lock (_lock) return [.. _buckets.SelectMany(b => b).Select(e => e.Snapshot())];
    }

    /// <summary>Indices (common-prefix lengths) of non-empty buckets.</summary>
    public IReadOnlyList<int> NonEmptyBuckets()
    {
        lock (_lock) return [.. Enumerable.Range(0, 257).Where(i => _buckets[i].Count > 0)];
    }

    /// <summary>Adds or refreshes a peer that answered or contacted us. Addresses beyond the per-peer cap are dropped.</summary>
    public RoutingAddResult TryAdd(PeerId peer, IReadOnlyList<Multiaddr> addresses, DateTimeOffset now)
    {
        if (peer == Self)
            return RoutingAddResult.Self;
        var addrs = addresses.Count > Options.MaxAddressesPerPeer ? [.. addresses.Take(Options.MaxAddressesPerPeer)] : addresses;
        lock (_lock)
        {
            if (_byPeer.TryGetValue(peer, out var existing))
            {
                existing.LastSeen = now;
                existing.Failures = 0;
                if (addrs.Count > 0 && !SameAddresses(existing.Addresses, addrs) && !SameGroups(existing.Groups, GroupsOf(addrs)))
                {
                    // Address change into other IP groups must pass the caps again: re-add.
                    RemoveLocked(existing);
                    return AddNewLocked(peer, addrs, now) == RoutingAddResult.Added ? RoutingAddResult.Updated : RoutingAddResult.RejectedDiversity;
                }
                if (addrs.Count > 0)
                    existing.Addresses = addrs;
                return RoutingAddResult.Updated;
            }
            return AddNewLocked(peer, addrs, now);
        }
    }

    private RoutingAddResult AddNewLocked(PeerId peer, IReadOnlyList<Multiaddr> addrs, DateTimeOffset now)
    {
        var id = KadId.FromPeer(peer);
        var cpl = SelfId.CommonPrefixLength(id);
        var bucket = _buckets[cpl];
        var groups = GroupsOf(addrs);
        foreach (var g in groups)
        {
            if (_groupCount.GetValueOrDefault(g) >= Options.MaxPerIpGroupPerTable
                || bucket.Count(e => e.Groups.Contains(g)) >= Options.MaxPerIpGroupPerBucket)
            {
                _metrics.DiversityRejected();
                return RoutingAddResult.RejectedDiversity;
            }
        }
        if (bucket.Count >= Options.BucketSize)
        {
            _metrics.BucketFullRejected();
            var repl = _replacements[cpl];
            repl.RemoveAll(r => r.Peer == peer);
            repl.Add((peer, addrs));
            if (repl.Count > Options.ReplacementCacheSize)
                repl.RemoveAt(0);
            return RoutingAddResult.BucketFull;
        }
        var e = new Entry { Peer = peer, Id = id, Addresses = addrs, Groups = groups, AddedAt = now, LastSeen = now };
        bucket.Add(e);
        _byPeer[peer] = e;
        foreach (var g in groups)
            _groupCount[g] = _groupCount.GetValueOrDefault(g) + 1;
        return RoutingAddResult.Added;
    }

    /// <summary>The least recently seen member of the bucket <paramref name="peer"/> would go in, when that bucket is full; else null. Ping it and report the result to decide who stays.</summary>
    public RoutingEntry? StalestInFullBucket(PeerId peer)
    {
        var cpl = SelfId.CommonPrefixLength(KadId.FromPeer(peer));
        lock (_lock)
        {
            var b = _buckets[cpl];
            return b.Count < Options.BucketSize ? null : b.MinBy(e => e.LastSeen)!.Snapshot();
        }
    }

    /// <summary>Records an answer from <paramref name="peer"/> (clears its failure count).</summary>
    public void MarkAlive(PeerId peer, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (_byPeer.TryGetValue(peer, out var e)) { e.LastSeen = now; e.Failures = 0; }
        }
    }

    /// <summary>Records an unanswered request; evicts the peer (true) after too many in a row, promoting a replacement.</summary>
    public bool MarkFailed(PeerId peer, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (!_byPeer.TryGetValue(peer, out var e))
                return false;
            if (++e.Failures < Options.MaxConsecutiveFailures)
                return false;
            RemoveLocked(e);
            _metrics.Evicted();
            PromoteLocked(SelfId.CommonPrefixLength(e.Id), now);
            return true;
        }
    }

    /// <summary>Removes a peer; true if it was present.</summary>
    public bool Remove(PeerId peer)
    {
        lock (_lock)
        {
            if (!_byPeer.TryGetValue(peer, out var e))
                return false;
            RemoveLocked(e);
            return true;
        }
    }

    private void PromoteLocked(int cpl, DateTimeOffset now)
    {
        var repl = _replacements[cpl];
        while (repl.Count > 0 && _buckets[cpl].Count < Options.BucketSize)
        {
            var (p, a) = repl[^1];
            repl.RemoveAt(repl.Count - 1);
            if (!_byPeer.ContainsKey(p))
                AddNewLocked(p, a, now);
        }
    }

    private void RemoveLocked(Entry e)
    {
        _buckets[SelfId.CommonPrefixLength(e.Id)].Remove(e);
        _byPeer.Remove(e.Peer);
        foreach (var g in e.Groups)
        {
            var n = _groupCount[g] - 1;
            if (n == 0) _groupCount.Remove(g); else _groupCount[g] = n;
        }
    }

    /// <summary>Up to <paramref name="count"/> peers closest to <paramref name="target"/>, closest first.</summary>
    public List<RoutingEntry> NearestPeers(KadId target, int count)
    {
        var result = new List<RoutingEntry>(Math.Min(count, 64));
        lock (_lock)
        {
            Nearest(target, count, null);
            foreach (var e in _scratchResult) result.Add(e.Snapshot());
        }
        return result;
    }

    /// <summary>Up to <paramref name="count"/> peers closest to <paramref name="target"/>, as message peers, leaving out <paramref name="exclude"/>.</summary>
    public List<KadPeer> NearestKadPeers(KadId target, int count, PeerId? exclude = null)
    {
        var result = new List<KadPeer>(Math.Min(count, 64));
        lock (_lock)
        {
            Nearest(target, count, exclude);
            foreach (var e in _scratchResult) result.Add(e.AsKadPeer);
        }
        return result;
    }

    private readonly List<Entry> _scratch = [];
    private readonly List<Entry> _scratchResult = [];

    private sealed class DistanceComparer : IComparer<Entry>
    {
        public KadId Target;
        public int Compare(Entry? x, Entry? y) => Target.CompareDistance(x!.Id, y!.Id);
    }

    private readonly DistanceComparer _comparer = new();

    // XOR order by bucket: with c = cpl(self, target), bucket c holds the closest peers, then all buckets
    // deeper than c (one distance band), then buckets c-1, c-2, ... each strictly farther. Caller holds _lock.
    private void Nearest(KadId target, int count, PeerId? exclude)
    {
        _scratchResult.Clear();
        _comparer.Target = target;
        var c = Math.Min(SelfId.CommonPrefixLength(target), 256);
        void Take()
        {
            if (exclude is not null) _scratch.RemoveAll(e => e.Peer == exclude);
            if (_scratch.Count > 1) _scratch.Sort(_comparer);
            for (var i = 0; i < _scratch.Count && _scratchResult.Count < count; i++)
                _scratchResult.Add(_scratch[i]);
            _scratch.Clear();
        }
        _scratch.AddRange(_buckets[c]);
        Take();
        if (_scratchResult.Count < count)
        {
            for (var j = c + 1; j < _buckets.Length; j++) _scratch.AddRange(_buckets[j]);
            Take();
        }
        for (var j = c - 1; j >= 0 && _scratchResult.Count < count; j--)
        {
            _scratch.AddRange(_buckets[j]);
            Take();
        }
    }

    private static bool SameAddresses(IReadOnlyList<Multiaddr> a, IReadOnlyList<Multiaddr> b)
    {
        if (ReferenceEquals(a, b)) return true;
        if (a.Count != b.Count) return false;
        for (var i = 0; i < a.Count; i++)
            if (!a[i].Equals(b[i])) return false;
        return true;
    }

    private static bool SameGroups(string[] a, string[] b) => a.Length == b.Length && a.AsSpan().SequenceEqual(b);

    private string[] GroupsOf(IReadOnlyList<Multiaddr> addrs)
    {
        List<string>? groups = null;
        foreach (var a in addrs)
        {
            var g = IpGroup(a, Options.ExemptLoopback);
            if (g is not null && !(groups?.Contains(g) ?? false))
                (groups ??= []).Add(g);
        }
        if (groups is null) return [];
        groups.Sort(StringComparer.Ordinal);
        return [.. groups];
    }

    /// <summary>The diversity group of an address: "ip4:a.b.c" (/24) or "ip6:xxxx:xxxx:xxxx" (/48); null for non-IP or exempt addresses.</summary>
    public static string? IpGroup(Multiaddr address, bool exemptLoopback = true)
    {
        foreach (var c in address.Components)
        {
            if (c.Protocol is MultiaddrProtocol.Ip4 or MultiaddrProtocol.Ip6)
            {
                var ip = new IPAddress(c.Value.Span);
                if (exemptLoopback && (IPAddress.IsLoopback(ip) || ip.IsIPv6LinkLocal))
                    return null;
                var b = c.Value.Span;
                return ip.AddressFamily == AddressFamily.InterNetwork
                    ? $"ip4:{b[0]}.{b[1]}.{b[2]}"
                    : $"ip6:{b[0]:x2}{b[1]:x2}:{b[2]:x2}{b[3]:x2}:{b[4]:x2}{b[5]:x2}";
            }
        }
        return null;
    }
}
