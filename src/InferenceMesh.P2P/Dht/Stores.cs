using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>A stored record with the local time it was received.</summary>
/// <param name="Key">The record key.</param>
/// <param name="Value">The value.</param>
/// <param name="ReceivedAt">When this node stored it (expiry counts from here).</param>
public sealed record StoredRecord(byte[] Key, byte[] Value, DateTimeOffset ReceivedAt);

/// <summary>Records held by a node for other peers, with a count cap and age-based expiry. Thread-safe.</summary>
public sealed class RecordStore(int maxRecords)
{
    private readonly object _lock = new();
    private readonly Dictionary<string, StoredRecord> _records = new(StringComparer.Ordinal);

    /// <summary>Number of records.</summary>
    public int Count { get { lock (_lock) return _records.Count; } }

    /// <summary>The record for <paramref name="key"/>, or null.</summary>
    public StoredRecord? Get(ReadOnlySpan<byte> key)
    {
        var k = Convert.ToHexString(key);
        lock (_lock) return _records.GetValueOrDefault(k);
    }

    /// <summary>Stores or replaces; false when full and the key is new.</summary>
    public bool Put(StoredRecord record)
    {
        var k = Convert.ToHexString(record.Key);
        lock (_lock)
        {
            if (!_records.ContainsKey(k) && _records.Count >= maxRecords)
                return false;
            _records[k] = record;
            return true;
        }
    }

    /// <summary>Removes records received before <paramref name="cutoff"/>; returns how many.</summary>
    public int Expire(DateTimeOffset cutoff)
    {
        lock (_lock)
        {
            var old = _records.Where(kv => kv.Value.ReceivedAt < cutoff).Select(kv => kv.Key).ToList();
            foreach (var k in old) _records.Remove(k);
            return old.Count;
        }
    }
}

/// <summary>One provider of a key.</summary>
/// <param name="Peer">The provider and its addresses.</param>
/// <param name="ExpiresAt">When the record lapses unless re-announced.</param>
public sealed record ProviderEntry(KadPeer Peer, DateTimeOffset ExpiresAt);

/// <summary>Provider records by key, with caps and expiry. Thread-safe.</summary>
public sealed class ProviderStore(int maxKeys, int maxProvidersPerKey)
{
    private readonly object _lock = new();
    private readonly Dictionary<string, Dictionary<PeerId, ProviderEntry>> _byKey = new(StringComparer.Ordinal);

    /// <summary>Number of keys with providers.</summary>
    public int KeyCount { get { lock (_lock) return _byKey.Count; } }

    /// <summary>Adds or refreshes a provider; false when a cap refuses it.</summary>
    public bool Add(ReadOnlySpan<byte> key, KadPeer provider, DateTimeOffset expiresAt)
    {
        var k = Convert.ToHexString(key);
        lock (_lock)
        {
            if (!_byKey.TryGetValue(k, out var set))
            {
                if (_byKey.Count >= maxKeys)
                    return false;
                _byKey[k] = set = [];
            }
            if (!set.ContainsKey(provider.Id) && set.Count >= maxProvidersPerKey)
                return false;
            set[provider.Id] = new ProviderEntry(provider, expiresAt);
            return true;
        }
    }

    /// <summary>Unexpired providers of <paramref name="key"/>, most recently refreshed first.</summary>
    public List<KadPeer> Get(ReadOnlySpan<byte> key, DateTimeOffset now, int max)
    {
        var k = Convert.ToHexString(key);
        lock (_lock)
        {
            if (!_byKey.TryGetValue(k, out var set))
                return [];
            return [.. set.Values.Where(e => e.ExpiresAt > now).OrderByDescending(e => e.ExpiresAt).Take(max).Select(e => e.Peer)];
        }
    }

    /// <summary>Drops lapsed provider records; returns how many.</summary>
    public int Expire(DateTimeOffset now)
    {
        var n = 0;
        lock (_lock)
        {
            foreach (var (k, set) in _byKey.ToList())
            {
                foreach (var (p, e) in set.ToList())
                    if (e.ExpiresAt <= now) { set.Remove(p); n++; }
                if (set.Count == 0) _byKey.Remove(k);
            }
        }
        return n;
    }
}
