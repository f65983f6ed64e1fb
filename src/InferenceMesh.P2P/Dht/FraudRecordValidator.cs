using System.Text;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The <c>/fraud/&lt;modelId&gt;/&lt;accused PeerId&gt;</c> namespace: a record value is a list of <see cref="FraudReport"/>
/// entries, each signed by its reporter. Values merge (each reporter adds or refreshes its own entry), so a forged report
/// cannot push a genuine one out except by outnumbering it past <see cref="MaxEntries"/>. Entries with a bad signature,
/// a mismatched key or a lapsed or over-long lifetime are dropped. The DHT checks only who reports; whether the evidence
/// convicts is for each reader to find out by re-running it. Thread-safe.
/// </summary>
public sealed class FraudRecordValidator(TimeProvider? time = null) : IMergingRecordValidator
{
    /// <summary>The namespace.</summary>
    public const string Namespace = "fraud";

    /// <summary>Most reports (reporters) kept per accused server.</summary>
    public const int MaxEntries = 16;

    /// <summary>Largest signed entry, in bytes.</summary>
    public const int MaxEntryLength = 8 * 1024;

    /// <summary>Most chunks one report's evidence may span.</summary>
    public const int MaxChunks = 128;

    /// <summary>Largest evidence a report may name, in bytes (<see cref="MaxChunks"/> full chunks).</summary>
    public const long MaxEvidenceLength = (long)MaxChunks * BlobRecordValidator.MaxValueLength;

    private static readonly byte[] SignaturePrefix = "inferencemesh-fraud:"u8.ToArray();
    private readonly TimeProvider _time = time ?? TimeProvider.System;

    /// <summary>Longest lifetime (expiry minus issue time) accepted for a report.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromDays(2);

    /// <summary>Tolerated clock skew for a report issued in the future.</summary>
    public TimeSpan MaxClockSkew { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The record key of the reports against <paramref name="accused"/> for <paramref name="modelId"/>.</summary>
    public static byte[] KeyFor(string modelId, PeerId accused)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        if (modelId.Contains('/'))
            throw new ArgumentException("a ModelId has no slashes", nameof(modelId));
        return System.Text.Encoding.UTF8.GetBytes($"/{Namespace}/{modelId}/{accused}");
    }

    /// <summary>Signs <paramref name="report"/> with <paramref name="identity"/>, which must be its reporter's key; returns the signed entry.</summary>
    public static byte[] Sign(FraudReport report, Ed25519KeyPair identity)
    {
        if (report.Reporter != identity.PeerId)
            throw new ArgumentException("a reporter signs only its own report", nameof(report));
        return SignedEntries.Sign(report.EncodeBody(), SignaturePrefix, identity);
    }

    /// <summary>A record value holding the given signed entries.</summary>
    public static byte[] EncodeValue(IEnumerable<byte[]> signedEntries) => SignedEntries.EncodeValue(signedEntries);

    /// <summary>The valid, unexpired reports of a value. Throws <see cref="DhtException"/> (InvalidRecord) when the value or key is malformed.</summary>
    public IReadOnlyList<FraudReport> ReadEntries(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value) => [.. Parse(key, value).Select(e => e.Report)];

    private List<(FraudReport Report, byte[] Signed)> Parse(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (value.Length > MaxEntries * 2 * (MaxEntryLength + 8))
            throw new DhtException(DhtErrorCode.InvalidRecord, $"fraud record of {value.Length} bytes is too long");
        var (model, accused) = ParseKey(key);
        var now = _time.GetUtcNow();
        var result = new List<(FraudReport, byte[])>();
        foreach (var signed in SignedEntries.Split(value, MaxEntries * 2, "fraud"))
            if (CheckEntry(signed, model, accused, now) is { } report)
                result.Add((report, signed));
        return result;
    }

    private FraudReport? CheckEntry(ReadOnlySpan<byte> signed, string model, string accused, DateTimeOffset now)
    {
        if (signed.Length > MaxEntryLength) return null;
        var report = SignedEntries.Open(signed, SignaturePrefix, body => FraudReport.DecodeBody(body), r => r.Reporter, out _);
        if (report is null) return null;
        if (report.ModelId != model || report.Accused.ToString() != accused) return null;
        if (report.ExpiresAt <= now || report.ExpiresAt - report.IssuedAt > MaxTtl || report.IssuedAt > now + MaxClockSkew) return null;
        return report;
    }

    private static (string Model, string Accused) ParseKey(ReadOnlySpan<byte> key)
    {
        string text;
        try { text = new UTF8Encoding(false, true).GetString(key); }
        catch (ArgumentException e) { throw new DhtException(DhtErrorCode.InvalidRecord, "fraud key is not UTF-8", e); }
        var parts = text.Split('/');
        if (parts.Length != 4 || parts[0].Length != 0 || parts[1] != Namespace || parts[2].Length == 0 || !PeerId.TryParse(parts[3], out _))
            throw new DhtException(DhtErrorCode.InvalidRecord, "fraud key is not /fraud/<modelId>/<PeerId>");
        return (parts[2], parts[3]);
    }

    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (Parse(key, value).Count == 0)
            throw new DhtException(DhtErrorCode.InvalidRecord, "fraud record holds no valid, unexpired report");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;

    /// <summary>Union of both values' valid reports, the latest per reporter, at most <see cref="MaxEntries"/> (latest expiring kept); empty when none is left.</summary>
    public byte[] Merge(ReadOnlySpan<byte> key, ReadOnlySpan<byte> existing, ReadOnlySpan<byte> incoming)
    {
        var byReporter = new Dictionary<PeerId, (FraudReport Report, byte[] Signed)>();
        foreach (var e in Parse(key, existing).Concat(Parse(key, incoming)))
            if (!byReporter.TryGetValue(e.Report.Reporter, out var current) || e.Report.IssuedAt > current.Report.IssuedAt)
                byReporter[e.Report.Reporter] = e;
        if (byReporter.Count == 0) return [];
        return EncodeValue(byReporter.Values.OrderByDescending(e => e.Report.ExpiresAt).Take(MaxEntries)
            .OrderBy(e => e.Report.Reporter.ToString(), StringComparer.Ordinal).Select(e => e.Signed));
    }
}
