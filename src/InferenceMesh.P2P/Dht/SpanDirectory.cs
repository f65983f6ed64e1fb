using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Publishes and reads span announcements: one signed <see cref="ServerInfo"/> per served block under
/// <c>/span/&lt;modelId&gt;/&lt;block&gt;</c>, TTL <see cref="Ttl"/> (120 s), refreshed every
/// <see cref="RefreshInterval"/> (60 s) by the server. The node's <see cref="KadDht"/> must have a
/// <see cref="SpanRecordValidator"/> registered under <see cref="SpanRecordValidator.Namespace"/>. Thread-safe.
/// </summary>
public sealed class SpanDirectory(KadDht dht, Ed25519KeyPair? identity = null)
{
    /// <summary>Lifetime of one announcement (Petals: 120 s).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromSeconds(120);

    /// <summary>Period of re-announcement (Petals: 60 s).</summary>
    public TimeSpan RefreshInterval { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// Signs and stores this server's <see cref="ServerInfo"/> for every block of <paramref name="span"/> (identity,
    /// addresses, block and times filled in here); returns the number of blocks that at least one peer stored.
    /// Needs the identity given at construction. Safe to cancel (blocks already announced stay announced until they expire).
    /// </summary>
    /// <param name="throughput">Measured decode speed, tokens per second through the whole span.</param>
    /// <param name="freeCacheTokens">KV-cache room the server can still give, in positions.</param>
    public async Task<int> AnnounceAsync(string modelId, BlockRange span, double throughput, ServerState state, long freeCacheTokens, CancellationToken cancellationToken = default)
    {
        if (identity is null)
            throw new InvalidOperationException("announcing needs the server's identity");
        var now = dht.Options.Time.GetUtcNow();
        var stored = 0;
        for (var block = span.Start; block < span.End; block++)
        {
            var info = new ServerInfo
            {
                Peer = identity.PeerId,
                Addresses = dht.LocalAddresses,
                ModelId = modelId,
                Block = block,
                Span = span,
                Throughput = throughput,
                State = state,
                FreeCacheTokens = freeCacheTokens,
                IssuedAt = now,
                ExpiresAt = now + Ttl,
                UsingRelay = dht.LocalAddresses.Count > 0 && dht.LocalAddresses.All(Relay.CircuitRelayClient.IsCircuit),
            };
            var value = SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(info, identity)]);
            if (await dht.PutValueAsync(SpanRecordValidator.KeyFor(modelId, block), value, republish: false, cancellationToken) > 0)
                stored++;
        }
        return stored;
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

    /// <summary>
    /// Asks the DHT, as a client would, every <paramref name="poll"/> until every block 0..<paramref name="blockCount"/>-1
    /// has an online server (on the DHT's clock). Safe to cancel.
    /// </summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.Timeout"/> naming the blocks still unserved after <paramref name="timeout"/>.</exception>
    public async Task WaitUntilServedAsync(string modelId, int blockCount, TimeSpan timeout, TimeSpan poll, CancellationToken cancellationToken = default)
    {
        var time = dht.Options.Time;
        var deadline = time.GetUtcNow() + timeout;
        while (true)
        {
            var perBlock = await ListServersAsync(modelId, blockCount, cancellationToken).ConfigureAwait(false);
            var unserved = Enumerable.Range(0, blockCount).Where(b => !perBlock[b].Any(s => s.State == ServerState.Online)).ToList();
            if (unserved.Count == 0) return;
            if (time.GetUtcNow() >= deadline)
                throw new MeshException(MeshErrorCode.Timeout, $"after {timeout.TotalSeconds:F0} s the DHT lists no server for blocks {string.Join(", ", unserved)}");
            await Task.Delay(poll, time, cancellationToken).ConfigureAwait(false);
        }
    }
}
