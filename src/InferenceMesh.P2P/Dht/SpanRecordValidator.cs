using System.Globalization;
using System.Text;
using InferenceMesh.P2P.Identity;
namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The <c>/span/&lt;modelId&gt;/&lt;block&gt;</c> namespace: a record value is a list of signed
/// <see cref="ServerInfo"/> entries, one per server of that block. Values merge (each server adds or
/// refreshes its own entry); entries with a bad signature, a mismatched key, an expired or over-long
/// lifetime are dropped and counted. A value is valid when at least one entry is. Thread-safe.
/// </summary>
public sealed class SpanRecordValidator(TimeProvider? time = null) : IMergingRecordValidator
{
    /// <summary>The namespace.</summary>
    public const string Namespace = "span";

    /// <summary>Most entries (servers) kept per block.</summary>
    public const int MaxEntries = 64;

    /// <summary>Most addresses kept per entry.</summary>
    public const int MaxAddresses = 8;

    /// <summary>Largest value accepted, in bytes.</summary>
    public const int MaxValueLength = 64 * 1024;

    /// <summary>Largest signed entry, in bytes.</summary>
    public const int MaxEntryLength = 2048;

    private static readonly byte[] SignaturePrefix = "inferencemesh-span:"u8.ToArray();
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private long _badSignatures, _expired, _malformed;

    /// <summary>Longest lifetime (expiry minus issue time) accepted for an entry.</summary>
    public TimeSpan MaxTtl { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Tolerated clock skew for an entry issued in the future.</summary>
    public TimeSpan MaxClockSkew { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Entries dropped for a bad signature.</summary>
    public long BadSignatures => Interlocked.Read(ref _badSignatures);

    /// <summary>Entries dropped because they had expired.</summary>
    public long ExpiredEntries => Interlocked.Read(ref _expired);

    /// <summary>Entries dropped as malformed or not matching their key.</summary>
    public long MalformedEntries => Interlocked.Read(ref _malformed);

    /// <summary>The record key of a block: <c>/span/&lt;modelId&gt;/&lt;block&gt;</c>.</summary>
    public static byte[] KeyFor(string modelId, int block)
    {
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        ArgumentOutOfRangeException.ThrowIfNegative(block);
        if (modelId.Contains('/'))
            throw new ArgumentException("a ModelId has no slashes", nameof(modelId));
        return System.Text.Encoding.UTF8.GetBytes($"/{Namespace}/{modelId}/{block.ToString(CultureInfo.InvariantCulture)}");
    }

    /// <summary>Signs <paramref name="info"/> with <paramref name="identity"/> (whose PeerId must be <see cref="ServerInfo.Peer"/>); returns the signed entry.</summary>
    public static byte[] Sign(ServerInfo info, Ed25519KeyPair identity)
    {
        if (info.Peer != identity.PeerId)
            throw new ArgumentException("a server signs only its own ServerInfo", nameof(info));
        return SignedEntries.Sign(info.EncodeBody(), SignaturePrefix, identity);
    }

    /// <summary>A record value holding the given signed entries.</summary>
    public static byte[] EncodeValue(IEnumerable<byte[]> signedEntries) => SignedEntries.EncodeValue(signedEntries);

    /// <summary>The valid, unexpired entries of a value; the rest are dropped and counted. Throws <see cref="DhtException"/> (InvalidRecord) when the value itself is malformed.</summary>
    public IReadOnlyList<ServerInfo> ReadEntries(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value) =>
        [.. Parse(key, value).Select(e => e.Info)];

    private List<(ServerInfo Info, byte[] Signed)> Parse(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (value.Length > MaxValueLength)
            throw new DhtException(DhtErrorCode.InvalidRecord, $"span record of {value.Length} bytes exceeds {MaxValueLength}");
        var (model, block) = ParseKey(key);
        var now = _time.GetUtcNow();
        var result = new List<(ServerInfo, byte[])>();
        foreach (var signed in SignedEntries.Split(value, MaxEntries * 2, "span"))
            if (CheckEntry(signed, model, block, now) is { } info)
                result.Add((info, signed));
        return result;
    }

    private ServerInfo? CheckEntry(ReadOnlySpan<byte> signed, string model, int block, DateTimeOffset now)
    {
        if (signed.Length > MaxEntryLength) { Interlocked.Increment(ref _malformed); return null; }
        var info = SignedEntries.Open(signed, SignaturePrefix, body => ServerInfo.DecodeBody(body), i => i.Peer, out var malformed);
        if (info is null)
        {
            Interlocked.Increment(ref malformed ? ref _malformed : ref _badSignatures);
            return null;
        }
        if (info.ModelId != model || info.Block != block || !info.Span.Contains(block))
        {
            Interlocked.Increment(ref _malformed);
            return null;
        }
        if (info.ExpiresAt <= now || info.ExpiresAt - info.IssuedAt > MaxTtl || info.IssuedAt > now + MaxClockSkew)
        {
            Interlocked.Increment(ref _expired);
            return null;
        }
        return info;
    }

    private static (string Model, int Block) ParseKey(ReadOnlySpan<byte> key)
    {
        string text;
        try { text = new UTF8Encoding(false, true).GetString(key); }
        catch (ArgumentException e) { throw new DhtException(DhtErrorCode.InvalidRecord, "span key is not UTF-8", e); }
        var parts = text.Split('/');
        if (parts.Length != 4 || parts[0].Length != 0 || parts[1] != Namespace || parts[2].Length == 0
            || !int.TryParse(parts[3], NumberStyles.None, CultureInfo.InvariantCulture, out var block))
            throw new DhtException(DhtErrorCode.InvalidRecord, "span key is not /span/<modelId>/<block>");
        return (parts[2], block);
    }

    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (Parse(key, value).Count == 0)
            throw new DhtException(DhtErrorCode.InvalidRecord, "span record holds no valid, unexpired entry");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;

    /// <summary>Union of both values' valid entries, the latest per server, at most <see cref="MaxEntries"/> (latest expiring kept); empty when none is left. <paramref name="incoming"/> may be empty (prunes <paramref name="existing"/>).</summary>
    public byte[] Merge(ReadOnlySpan<byte> key, ReadOnlySpan<byte> existing, ReadOnlySpan<byte> incoming)
    {
        var byPeer = new Dictionary<PeerId, (ServerInfo Info, byte[] Signed)>();
        foreach (var e in Parse(key, existing).Concat(Parse(key, incoming)))
            if (!byPeer.TryGetValue(e.Info.Peer, out var cur) || e.Info.IssuedAt > cur.Info.IssuedAt)
                byPeer[e.Info.Peer] = e;
        if (byPeer.Count == 0)
            return [];
        var kept = byPeer.Values.OrderByDescending(e => e.Info.ExpiresAt).Take(MaxEntries)
            .OrderBy(e => e.Info.Peer.ToString(), StringComparer.Ordinal).Select(e => e.Signed);
        return EncodeValue(kept);
    }
}
