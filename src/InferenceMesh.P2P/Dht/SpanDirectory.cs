using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Publishes and reads span announcements: one signed <see cref="ServerInfo"/> per served block under
/// <c>/span/&lt;modelId&gt;/&lt;block&gt;</c>, TTL <see cref="Ttl"/> (120 s), refreshed every
/// <see cref="RefreshInterval"/> (60 s) by <see cref="RunAsync"/>. The node's <see cref="KadDht"/> must have a
/// <see cref="SpanRecordValidator"/> registered under <see cref="SpanRecordValidator.Namespace"/>. Thread-safe.
/// </summary>
public sealed class SpanDirectory(KadDht dht, Ed25519KeyPair? identity = null)
{
    /// <summary>Lifetime of one announcement (Petals: 120 s).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Period of re-announcement (Petals: 60 s).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Signs and stores this server's entry for every block of <paramref name="announcement"/>'s span; returns
    /// the number of blocks that at least one peer stored. Needs the identity given at construction.
    /// Safe to cancel (blocks already announced stay announced until they expire).
    /// </summary>
    public async Task<int> AnnounceAsync(SpanAnnouncement announcement, CancellationToken cancellationToken = default)
    {
        if (identity is null)
            throw new InvalidOperationException("announcing needs the server's identity");
        var now = dht.Options.Time.GetUtcNow();
        var stored = 0;
        for (var block = announcement.Span.Start; block < announcement.Span.End; block++)
        {
            var info = new ServerInfo
            {
                Peer = identity.PeerId,
                Addresses = dht.LocalAddresses,
                ModelId = announcement.ModelId,
                Block = block,
                Span = announcement.Span,
                Throughput = announcement.Throughput,
                State = announcement.State,
                FreeCacheTokens = announcement.FreeCacheTokens,
                IssuedAt = now,
                ExpiresAt = now + Ttl,
            };
            var value = SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(info, identity)]);
            if (await dht.PutValueAsync(SpanRecordValidator.KeyFor(announcement.ModelId, block), value, republish: false, cancellationToken) > 0)
                stored++;
        }
        return stored;
    }

    /// <summary>
    /// Announces what <paramref name="current"/> returns now and every <see cref="RefreshInterval"/> until
    /// cancelled; a null announcement skips that round. Failed rounds are retried next period. Safe to cancel.
    /// </summary>
    public async Task RunAsync(Func<SpanAnnouncement?> current, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (current() is { } a)
                    await AnnounceAsync(a, cancellationToken);
            }
            catch (MeshException)
            {
                // retried next period
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            try
            {
                await Task.Delay(RefreshInterval, dht.Options.Time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>The valid, unexpired servers of one block (signatures checked), fastest first. Safe to cancel.</summary>
    public async Task<IReadOnlyList<ServerInfo>> GetServersAsync(string modelId, int block, CancellationToken cancellationToken = default)
    {
        var key = SpanRecordValidator.KeyFor(modelId, block);
        if (dht.Options.Validators.For(key) is not SpanRecordValidator validator)
            throw new DhtException(DhtErrorCode.UnknownNamespace, $"namespace '{SpanRecordValidator.Namespace}' needs a {nameof(SpanRecordValidator)}");
        var r = await dht.GetValueAsync(key, cancellationToken);
        if (r.Value is null)
            return [];
        return [.. validator.ReadEntries(key, r.Value).OrderByDescending(s => s.Throughput).ThenBy(s => s.Peer.ToString(), StringComparer.Ordinal)];
    }

    /// <summary>Block lookups <see cref="ListServersAsync"/> runs at once.</summary>
    public int MaxConcurrentBlocks { get; init; } = 8;

    /// <summary>
    /// For each block 0..<paramref name="blockCount"/>-1, who serves it (see <see cref="GetServersAsync"/>);
    /// up to <see cref="MaxConcurrentBlocks"/> lookups in flight. Safe to cancel.
    /// </summary>
    public async Task<IReadOnlyList<IReadOnlyList<ServerInfo>>> ListServersAsync(string modelId, int blockCount, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(blockCount);
        var result = new IReadOnlyList<ServerInfo>[blockCount];
        var batch = Math.Max(1, MaxConcurrentBlocks);
        for (var first = 0; first < blockCount; first += batch)
        {
            var blocks = Enumerable.Range(first, Math.Min(batch, blockCount - first)).ToList();
            var found = await Task.WhenAll(blocks.Select(b => GetServersAsync(modelId, b, cancellationToken)));
            for (var i = 0; i < blocks.Count; i++)
                result[blocks[i]] = found[i];
        }
        return result;
    }
}
