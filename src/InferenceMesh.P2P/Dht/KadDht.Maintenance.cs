using InferenceMesh.Core;

namespace InferenceMesh.P2P.Dht;

public sealed partial class KadDht
{
    /// <summary>
    /// One maintenance pass: drops expired records and provider records, republishes this node's records and
    /// provider announcements that are due, and refreshes the routing table when
    /// <see cref="KadDhtOptions.RefreshInterval"/> has passed. Safe to cancel.
    /// </summary>
    public async Task RunMaintenanceAsync(CancellationToken cancellationToken = default)
    {
        var now = Now;
        var expired = _records.Expire(now - Options.MaxRecordAge) + _providers.Expire(now);
        if (expired > 0) Metrics.ExpiredRecord(expired);
        List<(byte[] Key, byte[] Value)> republish;
        List<byte[]> reprovide;
        lock (_lock)
        {
            republish = [.. _published.Values.Where(p => now - p.At >= Options.RecordRepublishInterval).Select(p => (p.Key, p.Value))];
            reprovide = [.. _provided.Values.Where(p => now - p.At >= Options.ProviderRepublishInterval).Select(p => p.Key)];
        }
        foreach (var (k, v) in republish)
            await PutValueAsync(k, v, true, cancellationToken);
        foreach (var k in reprovide)
            await ProvideAsync(k, cancellationToken);
        DateTimeOffset lastRefresh;
        lock (_lock) lastRefresh = _lastRefresh;
        if (now - lastRefresh >= Options.RefreshInterval && RoutingTable.Count > 0)
            await RefreshAsync(cancellationToken);
    }

    /// <summary>Stops republishing <paramref name="key"/> (a record or a provided key).</summary>
    public void Forget(byte[] key)
    {
        var k = Convert.ToHexString(key);
        lock (_lock) { _published.Remove(k); _provided.Remove(k); }
    }

    /// <summary>Starts the background loop that runs <see cref="RunMaintenanceAsync"/> every <see cref="KadDhtOptions.MaintenanceInterval"/> (errors are swallowed and retried next period). Idempotent.</summary>
    public void Start()
    {
        lock (_lock)
        {
            if (_loop is not null) return;
            _loopCts = new CancellationTokenSource();
            var ct = _loopCts.Token;
            _loop = Task.Run(async () =>
            {
                while (!ct.IsCancellationRequested)
                {
                    try
                    {
                        await RunMaintenanceAsync(ct);
                        await Task.Delay(Options.MaintenanceInterval, Options.Time, ct);
                    }
                    catch (OperationCanceledException) when (ct.IsCancellationRequested)
                    {
                        return;
                    }
                    catch (MeshException)
                    {
                        // a failed refresh (e.g. no peers yet) is retried next period
                    }
                }
            }, CancellationToken.None);
        }
    }

    /// <summary>Stops the background loop. Not safe to cancel.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? loop;
        lock (_lock)
        {
            loop = _loop;
            _loopCts?.Cancel();
        }
        if (loop is not null)
        {
            try { await loop.ConfigureAwait(false); }
            catch (OperationCanceledException) { }
        }
        _loopCts?.Dispose();
    }
}
