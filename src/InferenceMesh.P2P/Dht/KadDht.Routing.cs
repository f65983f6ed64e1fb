using InferenceMesh.Core;

namespace InferenceMesh.P2P.Dht;

public sealed partial class KadDht
{
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
        var delay = Options.BootstrapRetryDelay;
        for (var attempt = 1; ; attempt++)
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
                if (attempt >= Options.BootstrapAttempts) return false;
            }
            double jitter;
            lock (_lock) jitter = _random.NextDouble() * 0.5;
            await Task.Delay(delay * (1 + jitter), Options.Time, ct);
            delay *= 2;
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
}
