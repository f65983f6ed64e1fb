using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
namespace InferenceMesh.P2P.Dht;

/// <summary>
/// One server's announcement for one block (Petals' ServerInfo): who, where, which span it serves, how
/// fast, in what state, how much KV cache it can still give, and until when the announcement holds.
/// Signed by the server's Ed25519 identity when published; checked on every read.
/// </summary>
public sealed record ServerInfo
{
    /// <summary>The server; an Ed25519 identity-multihash PeerId (its public key checks the signature).</summary>
    public required PeerId Peer { get; init; }

    /// <summary>Addresses to dial it on.</summary>
    public IReadOnlyList<Multiaddr> Addresses { get; init; } = [];

    /// <summary>The model (Manifest.ModelId, lower-case hex sha256).</summary>
    public required string ModelId { get; init; }

    /// <summary>The block this entry is keyed under (0-based).</summary>
    public required int Block { get; init; }

    /// <summary>The whole span the server serves; contains <see cref="Block"/>.</summary>
    public required BlockRange Span { get; init; }

    /// <summary>Measured throughput, in tokens per second through the whole span.</summary>
    public double Throughput { get; init; }

    /// <summary>Lifecycle state.</summary>
    public ServerState State { get; init; } = ServerState.Online;

    /// <summary>Free KV-cache room, in tokens (positions) it can still accept across sessions.</summary>
    public long FreeCacheTokens { get; init; }

    /// <summary>When it was signed; of two entries from one server the later wins.</summary>
    public required DateTimeOffset IssuedAt { get; init; }

    /// <summary>When it lapses (issued + TTL, 120 s by default).</summary>
    public required DateTimeOffset ExpiresAt { get; init; }

    /// <summary>True when the server is reached only through a relay (it announces <c>/p2p-circuit</c> addresses alone): a hop to it costs the relay's detour unless DCUtR punches through.</summary>
    public bool UsingRelay { get; init; }

    internal byte[] EncodeBody()
    {
        var w = new ProtoWriter();
        w.WriteBytes(1, Peer.Span);
        foreach (var a in Addresses) w.WriteBytes(2, a.Span);
        w.WriteString(3, ModelId);
        w.WriteVarint(4, (ulong)Block);
        w.WriteVarint(5, (ulong)Span.Start);
        w.WriteVarint(6, (ulong)Span.End);
        w.WriteFixed64(7, BitConverter.DoubleToUInt64Bits(Throughput));
        w.WriteVarint(8, (ulong)State);
        w.WriteVarint(9, (ulong)Math.Max(0, FreeCacheTokens));
        w.WriteVarint(10, (ulong)IssuedAt.ToUnixTimeMilliseconds());
        w.WriteVarint(11, (ulong)ExpiresAt.ToUnixTimeMilliseconds());
        if (UsingRelay) w.WriteVarint(12, 1);
        return w.ToArray();
    }

    // Times past year 9999 do not fit a DateTimeOffset: found by AFL++ (fuzz/regressions/span-record), they threw ArgumentOutOfRangeException.
    private static readonly ulong MaxUnixMilliseconds = (ulong)DateTimeOffset.MaxValue.ToUnixTimeMilliseconds();

    internal static ServerInfo DecodeBody(ReadOnlySpan<byte> body)
    {
        var r = new ProtoReader(body, DhtException.InvalidMessage);
        PeerId? peer = null;
        var addrs = new List<Multiaddr>();
        string? model = null;
        ulong block = 0, start = 0, end = 0, state = 0, free = 0, issued = 0, expires = 0;
        double throughput = 0;
        var usingRelay = false;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1:
                    try { peer = PeerId.FromBytes(r.ReadBytes()); }
                    catch (P2PException e) { throw new DhtException(DhtErrorCode.InvalidRecord, "span entry PeerId is malformed", e); }
                    break;
                case 2:
                    var a = r.ReadBytes();
                    if (addrs.Count >= SpanRecordValidator.MaxAddresses) break;
                    try { addrs.Add(Multiaddr.FromBytes(a)); } catch (P2PException) { }
                    break;
                case 3: model = r.ReadString(); break;
                case 4: block = r.ReadVarintField(); break;
                case 5: start = r.ReadVarintField(); break;
                case 6: end = r.ReadVarintField(); break;
                case 7: throughput = BitConverter.UInt64BitsToDouble(r.ReadFixed64Field()); break;
                case 8: state = r.ReadVarintField(); break;
                case 9: free = r.ReadVarintField(); break;
                case 10: issued = r.ReadVarintField(); break;
                case 11: expires = r.ReadVarintField(); break;
                case 12: usingRelay = r.ReadVarintField() != 0; break;
                default: r.Skip(); break;
            }
        }
        if (peer is null || model is null || block > int.MaxValue || start > int.MaxValue || end > int.MaxValue || state > 2
            || issued > MaxUnixMilliseconds || expires > MaxUnixMilliseconds || free > long.MaxValue || end <= start
            || !double.IsFinite(throughput) || throughput < 0)
            throw new DhtException(DhtErrorCode.InvalidRecord, "span entry lacks a field or has one out of range");
        return new ServerInfo
        {
            Peer = peer,
            Addresses = addrs,
            ModelId = model,
            Block = (int)block,
            Span = new BlockRange((int)start, (int)end),
            Throughput = throughput,
            State = (ServerState)state,
            FreeCacheTokens = (long)free,
            IssuedAt = DateTimeOffset.FromUnixTimeMilliseconds((long)issued),
            ExpiresAt = DateTimeOffset.FromUnixTimeMilliseconds((long)expires),
            UsingRelay = usingRelay,
        };
    }
}
