using System.Security.Cryptography;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Publishes and reads fraud reports: the evidence is cut into content-addressed <c>/blob/</c> chunks
/// (<see cref="BlobRecordValidator"/>), and a signed <see cref="FraudReport"/> naming them is added to
/// <c>/fraud/&lt;modelId&gt;/&lt;accused&gt;</c> (<see cref="FraudRecordValidator"/>). Both validators must be registered
/// with the DHT. Reading gives the evidence bytes exactly as published, or says what was missing; judging them is the
/// reader's business. Thread-safe.
/// </summary>
public sealed class FraudReportDirectory(KadDht dht, Ed25519KeyPair? identity = null)
{
    /// <summary>Lifetime of a report (the ban a confirmed report leads to lasts as long on each client).</summary>
    public TimeSpan Ttl { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Reports read per accused server, newest first; the rest are ignored.</summary>
    public int MaxReportsRead { get; init; } = 4;

    /// <summary>Chunk stores or fetches in flight at once.</summary>
    public int MaxConcurrentChunks { get; init; } = 8;

    /// <summary>
    /// Stores <paramref name="evidence"/> as chunks and a report signed by this peer against <paramref name="accused"/>;
    /// returns the report. Needs the identity given at construction. Safe to cancel (chunks stored stay until they age out).
    /// </summary>
    /// <exception cref="DhtException">InvalidRecord when the evidence is empty or over <see cref="FraudRecordValidator.MaxEvidenceLength"/>;
    /// Unreachable when some chunk or the report reached no peer.</exception>
    public async Task<FraudReport> PublishAsync(string modelId, PeerId accused, ReadOnlyMemory<byte> evidence, CancellationToken cancellationToken = default)
    {
        if (identity is null)
            throw new InvalidOperationException("reporting needs the reporter's identity");
        if (evidence.Length == 0 || evidence.Length > FraudRecordValidator.MaxEvidenceLength)
            throw new DhtException(DhtErrorCode.InvalidRecord, $"evidence of {evidence.Length} bytes is empty or over {FraudRecordValidator.MaxEvidenceLength}");
        var chunks = new List<ReadOnlyMemory<byte>>();
        for (var at = 0; at < evidence.Length; at += BlobRecordValidator.MaxValueLength)
            chunks.Add(evidence.Slice(at, Math.Min(BlobRecordValidator.MaxValueLength, evidence.Length - at)));
        await InBatchesAsync(chunks.Count, async i =>
        {
            var value = chunks[i].ToArray();
            if (await dht.PutValueAsync(BlobRecordValidator.KeyFor(value), value, republish: false, cancellationToken) == 0 && dht.Options.Mode != DhtMode.Server)
                throw new DhtException(DhtErrorCode.Unreachable, "no peer stored a chunk of the evidence");
        });
        var now = dht.Options.Time.GetUtcNow();
        var report = new FraudReport
        {
            Reporter = identity.PeerId,
            Accused = accused,
            ModelId = modelId,
            EvidenceHash = SHA256.HashData(evidence.Span),
            EvidenceLength = evidence.Length,
            Chunks = [.. chunks.Select(c => SHA256.HashData(c.Span))],
            IssuedAt = now,
            ExpiresAt = now + Ttl,
        };
        var entry = FraudRecordValidator.EncodeValue([FraudRecordValidator.Sign(report, identity)]);
        if (await dht.PutValueAsync(FraudRecordValidator.KeyFor(modelId, accused), entry, republish: false, cancellationToken) == 0
            && dht.Options.Mode != DhtMode.Server)
            throw new DhtException(DhtErrorCode.Unreachable, "no peer stored the report");
        return report;
    }

    /// <summary>
    /// The valid, unexpired reports against <paramref name="accused"/> (reporters' signatures checked), newest first, at most
    /// <see cref="MaxReportsRead"/>, each with its evidence reassembled and checked against the report's hash, or null
    /// when a chunk could not be found. Safe to cancel.
    /// </summary>
    public async Task<IReadOnlyList<(FraudReport Report, byte[]? Evidence)>> ReadAsync(string modelId, PeerId accused, CancellationToken cancellationToken = default)
    {
        var key = FraudRecordValidator.KeyFor(modelId, accused);
        if (dht.Options.Validators.For(key) is not FraudRecordValidator validator)
            throw new DhtException(DhtErrorCode.UnknownNamespace, $"namespace '{FraudRecordValidator.Namespace}' needs a {nameof(FraudRecordValidator)}");
        var found = await dht.GetValueAsync(key, cancellationToken);
        if (found.Value is null) return [];
        var result = new List<(FraudReport, byte[]?)>();
        foreach (var report in validator.ReadEntries(key, found.Value).OrderByDescending(r => r.IssuedAt).Take(MaxReportsRead))
            result.Add((report, await FetchAsync(report, cancellationToken)));
        return result;
    }

    private async Task<byte[]?> FetchAsync(FraudReport report, CancellationToken cancellationToken)
    {
        var chunks = new byte[report.Chunks.Count][];
        await InBatchesAsync(chunks.Length, async i =>
            chunks[i] = (await dht.GetValueAsync(BlobRecordValidator.KeyForHash(report.Chunks[i]), cancellationToken)).Value ?? []);
        if (chunks.Any(c => c.Length == 0) || chunks.Sum(c => (long)c.Length) != report.EvidenceLength) return null;
        var evidence = chunks.SelectMany(c => c).ToArray();
        return SHA256.HashData(evidence).AsSpan().SequenceEqual(report.EvidenceHash) ? evidence : null;
    }

    /// <summary>Runs <paramref name="work"/> for 0..<paramref name="count"/>-1, <see cref="MaxConcurrentChunks"/> at a time (on the caller's scheduler, as the DHT's own lookups do).</summary>
    private async Task InBatchesAsync(int count, Func<int, Task> work)
    {
        var batch = Math.Max(1, MaxConcurrentChunks);
        for (var first = 0; first < count; first += batch)
            await Task.WhenAll(Enumerable.Range(first, Math.Min(batch, count - first)).Select(work));
    }
}
