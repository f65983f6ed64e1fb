using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

public sealed partial class KadDht
{
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
            throw new DhtException(DhtErrorCode.LimitExceeded, $"record store full ({Options.MaxRecords} records or {Options.MaxRecordBytes} bytes)");
    }
}
