using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

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
