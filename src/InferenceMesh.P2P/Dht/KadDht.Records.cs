using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

public sealed partial class KadDht
{
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
}
