namespace InferenceMesh.P2P.Dht;

/// <summary>Records held by a node for other peers, capped by count and by bytes (keys plus values), with age-based expiry. Thread-safe.</summary>
public sealed class RecordStore(int maxRecords, long maxBytes = long.MaxValue)
{
    private readonly object _lock = new();
    private readonly Dictionary<string, StoredRecord> _records = new(StringComparer.Ordinal);
    private long _bytes;

    /// <summary>Number of records.</summary>
    public int Count { get { lock (_lock) return _records.Count; } }

    /// <summary>Bytes held: the keys and values of every record.</summary>
    public long Bytes { get { lock (_lock) return _bytes; } }

    /// <summary>The record for <paramref name="key"/>, or null.</summary>
    public StoredRecord? Get(ReadOnlySpan<byte> key)
    {
        var k = Convert.ToHexString(key);
        lock (_lock) return _records.GetValueOrDefault(k);
    }

    /// <summary>Stores or replaces; false when the store would hold more than its records or bytes allow (a replacement counts only its growth).</summary>
    public bool Put(StoredRecord record)
    {
        var k = Convert.ToHexString(record.Key);
        lock (_lock)
        {
            var old = _records.GetValueOrDefault(k);
            var bytes = _bytes - (old is null ? 0 : Size(old)) + Size(record);
            if ((old is null && _records.Count >= maxRecords) || bytes > maxBytes)
                return false;
            _records[k] = record;
            _bytes = bytes;
            return true;
        }
    }

    /// <summary>Removes records received before <paramref name="cutoff"/>; returns how many.</summary>
    public int Expire(DateTimeOffset cutoff)
    {
        lock (_lock)
        {
            var old = _records.Where(kv => kv.Value.ReceivedAt < cutoff).ToList();
            foreach (var (k, record) in old)
            {
                _records.Remove(k);
                _bytes -= Size(record);
            }
            return old.Count;
        }
    }

    private static long Size(StoredRecord record) => record.Key.Length + record.Value.Length;
}
