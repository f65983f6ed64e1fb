namespace InferenceMesh.P2P.Dht;

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
