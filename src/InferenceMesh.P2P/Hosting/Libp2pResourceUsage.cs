using System.Collections.Concurrent;

namespace InferenceMesh.P2P.Hosting;

/// <summary>
/// Live counters of a host's resource scopes: what is held now and how often each <see cref="Libp2pLimit"/> was
/// hit since start. Read from any thread (the values are read one by one, not as one snapshot); the node exports
/// them as Prometheus metrics.
/// </summary>
public sealed class Libp2pResourceUsage
{
    private readonly long[] _hits = new long[Enum.GetValues<Libp2pLimit>().Length];
    private readonly ConcurrentDictionary<string, int> _pendingByKey = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _streamsByProtocol = new(StringComparer.Ordinal);
    private int _pending;
    private long _memory;

    /// <summary>Inbound connections accepted and not yet upgraded.</summary>
    public int PendingInbound => Volatile.Read(ref _pending);

    /// <summary>Bytes reserved by open connections (see <see cref="Libp2pResourceLimits.MemoryPerConnection"/>).</summary>
    public long ConnectionMemory => Interlocked.Read(ref _memory);

    /// <summary>Times <paramref name="limit"/> refused or closed a connection or stream.</summary>
    public long Hits(Libp2pLimit limit) => Interlocked.Read(ref _hits[(int)limit]);

    /// <summary>Inbound streams of <paramref name="protocol"/> being served now.</summary>
    public int InboundStreams(string protocol) => _streamsByProtocol.GetValueOrDefault(protocol);

    internal void Hit(Libp2pLimit limit) => Interlocked.Increment(ref _hits[(int)limit]);

    internal bool TryReserveMemory(long bytes, long max)
    {
        if (Interlocked.Add(ref _memory, bytes) <= max)
            return true;
        Interlocked.Add(ref _memory, -bytes);
        return false;
    }

    internal void ReleaseMemory(long bytes) => Interlocked.Add(ref _memory, -bytes);

    /// <summary>Counts one pending inbound connection under each key; returns the limit hit (nothing counted then) or null.</summary>
    internal Libp2pLimit? TryAddPending(int max, (string Key, int Max, Libp2pLimit Limit)[] scopes)
    {
        if (Interlocked.Increment(ref _pending) > max)
        {
            Interlocked.Decrement(ref _pending);
            return Libp2pLimit.PendingInbound;
        }
        for (var i = 0; i < scopes.Length; i++)
        {
            if (Increment(_pendingByKey, scopes[i].Key) > scopes[i].Max)
            {
                for (var j = 0; j <= i; j++) Decrement(_pendingByKey, scopes[j].Key);
                Interlocked.Decrement(ref _pending);
                return scopes[i].Limit;
            }
        }
        return null;
    }

    internal void RemovePending((string Key, int Max, Libp2pLimit Limit)[] scopes)
    {
        foreach (var scope in scopes) Decrement(_pendingByKey, scope.Key);
        Interlocked.Decrement(ref _pending);
    }

    internal bool TryAddStream(string protocol, int max)
    {
        if (Increment(_streamsByProtocol, protocol) <= max)
            return true;
        Decrement(_streamsByProtocol, protocol);
        return false;
    }

    internal void RemoveStream(string protocol) => Decrement(_streamsByProtocol, protocol);

    private static int Increment(ConcurrentDictionary<string, int> counts, string key) =>
        counts.AddOrUpdate(key, 1, static (_, n) => n + 1);

    // A count that reaches zero is removed so that addresses met once do not stay in the table.
    private static void Decrement(ConcurrentDictionary<string, int> counts, string key)
    {
        while (counts.TryGetValue(key, out var n))
        {
            if (n <= 1 ? counts.TryRemove(KeyValuePair.Create(key, n)) : counts.TryUpdate(key, n - 1, n))
                return;
        }
    }
}
