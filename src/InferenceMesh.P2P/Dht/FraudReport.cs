using System.Security.Cryptography;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// One client's claim, signed with its own key, that <see cref="Accused"/> returned a wrong output for <see cref="ModelId"/>:
/// the claim names the evidence by its SHA-256 and the content-addressed <c>/blob/</c> records it is stored in
/// (<see cref="BlobRecordValidator"/>). The reporter's word convicts nobody: whoever reads the report fetches the evidence
/// and re-runs it (the accused's own signatures are inside the evidence).
/// </summary>
public sealed record FraudReport
{
    /// <summary>Who reports; an Ed25519 identity-multihash PeerId whose key signs the report.</summary>
    public required PeerId Reporter { get; init; }

    /// <summary>The server the evidence is against.</summary>
    public required PeerId Accused { get; init; }

    /// <summary>The model (Manifest.ModelId).</summary>
    public required string ModelId { get; init; }

    /// <summary>SHA-256 of the whole evidence (the chunks concatenated).</summary>
    public required byte[] EvidenceHash { get; init; }

    /// <summary>Length of the whole evidence, in bytes.</summary>
    public required long EvidenceLength { get; init; }

    /// <summary>SHA-256 of each chunk in order: the keys of its <c>/blob/</c> records.</summary>
    public required IReadOnlyList<byte[]> Chunks { get; init; }

    /// <summary>When the report was signed; of two reports by one reporter the later wins.</summary>
    public required DateTimeOffset IssuedAt { get; init; }

    /// <summary>When the report lapses.</summary>
    public required DateTimeOffset ExpiresAt { get; init; }

    internal byte[] EncodeBody()
    {
        var w = new ProtoWriter();
        w.WriteBytes(1, Reporter.Span);
        w.WriteBytes(2, Accused.Span);
        w.WriteString(3, ModelId);
        w.WriteBytes(4, EvidenceHash);
        w.WriteVarint(5, (ulong)EvidenceLength);
        foreach (var chunk in Chunks) w.WriteBytes(6, chunk);
        w.WriteVarint(7, (ulong)IssuedAt.ToUnixTimeMilliseconds());
        w.WriteVarint(8, (ulong)ExpiresAt.ToUnixTimeMilliseconds());
        return w.ToArray();
    }

    internal static FraudReport DecodeBody(ReadOnlySpan<byte> body)
    {
        var r = new ProtoReader(body, DhtException.InvalidMessage);
        PeerId? reporter = null, accused = null;
        string? model = null;
        byte[]? hash = null;
        var chunks = new List<byte[]>();
        ulong length = 0, issued = 0, expires = 0;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: reporter = Peer(r.ReadBytes()); break;
                case 2: accused = Peer(r.ReadBytes()); break;
                case 3: model = r.ReadString(); break;
                case 4: hash = r.ReadBytes().ToArray(); break;
                case 5: length = r.ReadVarintField(); break;
                case 6:
                    if (chunks.Count >= FraudRecordValidator.MaxChunks)
                        throw new DhtException(DhtErrorCode.InvalidRecord, $"fraud report names more than {FraudRecordValidator.MaxChunks} chunks");
                    chunks.Add(r.ReadBytes().ToArray());
                    break;
                case 7: issued = r.ReadVarintField(); break;
                case 8: expires = r.ReadVarintField(); break;
                default: r.Skip(); break;
            }
        }
        if (reporter is null || accused is null || string.IsNullOrEmpty(model) || hash is not { Length: SHA256.HashSizeInBytes } || chunks.Count == 0
            || chunks.Any(c => c.Length != SHA256.HashSizeInBytes) || length == 0 || length > (ulong)FraudRecordValidator.MaxEvidenceLength
            || issued > long.MaxValue / 2 || expires > long.MaxValue / 2)
            throw new DhtException(DhtErrorCode.InvalidRecord, "fraud report lacks a reporter, accused, model, evidence hash, length or chunks");
        return new FraudReport
        {
            Reporter = reporter,
            Accused = accused,
            ModelId = model,
            EvidenceHash = hash,
            EvidenceLength = (long)length,
            Chunks = chunks,
            IssuedAt = DateTimeOffset.FromUnixTimeMilliseconds((long)issued),
            ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds((long)expires),
        };
    }

    private static PeerId Peer(ReadOnlySpan<byte> bytes)
    {
        try { return PeerId.FromBytes(bytes); }
        catch (P2PException e) { throw new DhtException(DhtErrorCode.InvalidRecord, "fraud report PeerId is malformed", e); }
    }
}
