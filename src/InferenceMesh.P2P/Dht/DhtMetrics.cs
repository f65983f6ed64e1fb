namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Counters of one DHT node, updated atomically; read them at any time. Every rejection of hostile or
/// broken input has its own counter.
/// </summary>
public sealed class DhtMetrics
{
    private long _requestsSent, _requestFailures, _requestsHandled, _oversizedMessages, _invalidMessages,
        _invalidRecords, _expiredRecords, _badSignatures, _rejectedDiversity, _rejectedBucketFull,
        _evictedUnresponsive, _lookups, _providerRecordsRejected;

    /// <summary>Requests this node sent.</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);
    /// <summary>Requests that timed out or failed.</summary>
    public long RequestFailures => Interlocked.Read(ref _requestFailures);
    /// <summary>Inbound requests answered.</summary>
    public long RequestsHandled => Interlocked.Read(ref _requestsHandled);
    /// <summary>Inbound frames refused for exceeding the size limit.</summary>
    public long OversizedMessages => Interlocked.Read(ref _oversizedMessages);
    /// <summary>Inbound frames refused as malformed.</summary>
    public long InvalidMessages => Interlocked.Read(ref _invalidMessages);
    /// <summary>Records refused by their validator (or with no validator).</summary>
    public long InvalidRecords => Interlocked.Read(ref _invalidRecords);
    /// <summary>Records or record entries dropped because they had expired.</summary>
    public long ExpiredRecords => Interlocked.Read(ref _expiredRecords);
    /// <summary>Signed entries dropped for a bad signature.</summary>
    public long BadSignatures => Interlocked.Read(ref _badSignatures);
    /// <summary>Peers kept out of the routing table by the per-/24 (/48) cap.</summary>
    public long RejectedDiversity => Interlocked.Read(ref _rejectedDiversity);
    /// <summary>Peers kept out of a full bucket whose members were alive.</summary>
    public long RejectedBucketFull => Interlocked.Read(ref _rejectedBucketFull);
    /// <summary>Peers removed from the routing table after failing to answer.</summary>
    public long EvictedUnresponsive => Interlocked.Read(ref _evictedUnresponsive);
    /// <summary>Iterative lookups started.</summary>
    public long Lookups => Interlocked.Read(ref _lookups);
    /// <summary>ADD_PROVIDER requests refused (provider is not the sender, or over limits).</summary>
    public long ProviderRecordsRejected => Interlocked.Read(ref _providerRecordsRejected);

    internal void RequestSent() => Interlocked.Increment(ref _requestsSent);
    internal void RequestFailed() => Interlocked.Increment(ref _requestFailures);
    internal void RequestHandled() => Interlocked.Increment(ref _requestsHandled);
    internal void OversizedMessage() => Interlocked.Increment(ref _oversizedMessages);
    internal void InvalidMessage() => Interlocked.Increment(ref _invalidMessages);
    internal void InvalidRecord() => Interlocked.Increment(ref _invalidRecords);
    internal void ExpiredRecord(long n = 1) => Interlocked.Add(ref _expiredRecords, n);
    internal void BadSignature(long n = 1) => Interlocked.Add(ref _badSignatures, n);
    internal void DiversityRejected() => Interlocked.Increment(ref _rejectedDiversity);
    internal void BucketFullRejected() => Interlocked.Increment(ref _rejectedBucketFull);
    internal void Evicted() => Interlocked.Increment(ref _evictedUnresponsive);
    internal void LookupStarted() => Interlocked.Increment(ref _lookups);
    internal void ProviderRejected() => Interlocked.Increment(ref _providerRecordsRejected);
}
