using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Relay;

/// <summary>The message types of Circuit Relay v2's hop and stop protocols, one enum for both (their wire values differ).</summary>
internal enum CircuitMessageType
{
    Reserve,
    Connect,
    Status,
}

/// <summary>
/// A <c>HopMessage</c> (type=1, peer=2, reservation=3, limit=4, status=5) or <c>StopMessage</c> (type=1, peer=2,
/// limit=3, status=4) of Circuit Relay v2. Hop types: RESERVE=0, CONNECT=1, STATUS=2; stop types: CONNECT=0, STATUS=1.
/// </summary>
internal sealed record CircuitMessage(CircuitMessageType Type)
{
    /// <summary>Largest hop or stop message accepted, in bytes (the spec's implementations use 4 KiB).</summary>
    public const int MaxLength = 4096;

    private const int MaxAddresses = 32;

    public PeerId? Peer { get; init; }
    public IReadOnlyList<Multiaddr> PeerAddresses { get; init; } = [];
    public ulong? ReservationExpire { get; init; }
    public IReadOnlyList<Multiaddr> ReservationAddresses { get; init; } = [];
    public byte[]? Voucher { get; init; }
    public RelayLimit? Limit { get; init; }
    public RelayStatus Status { get; init; }
    public bool HasReservation { get; init; }

    public static CircuitMessage StatusOnly(RelayStatus status) => new(CircuitMessageType.Status) { Status = status };

    public byte[] Encode(bool hop)
    {
        var w = new ProtoWriter();
        w.WriteVarint(1, (ulong)(hop
            ? Type switch { CircuitMessageType.Reserve => 0, CircuitMessageType.Connect => 1, _ => 2 }
            : Type switch { CircuitMessageType.Connect => 0, CircuitMessageType.Status => 1, _ => throw new ArgumentException("RESERVE is not a stop message") }));
        if (Peer is not null)
        {
            var p = new ProtoWriter();
            p.WriteBytes(1, Peer.Span);
            foreach (var a in PeerAddresses) p.WriteBytes(2, a.Span);
            w.WriteBytes(2, p.WrittenSpan);
        }
        if (hop && HasReservation)
        {
            var r = new ProtoWriter();
            if (ReservationExpire is { } e) r.WriteVarint(1, e);
            foreach (var a in ReservationAddresses) r.WriteBytes(2, a.Span);
            if (Voucher is not null) r.WriteBytes(3, Voucher);
            w.WriteBytes(3, r.WrittenSpan);
        }
        if (Limit is not null)
        {
            var l = new ProtoWriter();
            if (Limit.Duration is { } d) l.WriteVarint(1, (ulong)Math.Min(uint.MaxValue, Math.Max(1, (long)Math.Ceiling(d.TotalSeconds))));
            if (Limit.Data is { } data) l.WriteVarint(2, data);
            w.WriteBytes(hop ? 4 : 3, l.WrittenSpan);
        }
        if (Status != RelayStatus.Unused)
            w.WriteVarint(hop ? 5 : 4, (ulong)Status);
        return w.ToArray();
    }

    /// <summary>Decodes a message already bounded in size; throws <see cref="P2PException"/> (InvalidEncoding, LimitExceeded).</summary>
    public static CircuitMessage Decode(ReadOnlySpan<byte> message, bool hop)
    {
        var r = new ProtoReader(message);
        CircuitMessageType? type = null;
        PeerId? peer = null;
        var peerAddrs = new List<Multiaddr>();
        var resAddrs = new List<Multiaddr>();
        ulong? expire = null;
        byte[]? voucher = null;
        RelayLimit? limit = null;
        var status = RelayStatus.Unused;
        var hasReservation = false;
        while (r.TryReadTag(out var f))
        {
            switch (f)
            {
                case 1:
                    var t = r.ReadVarintField();
                    type = hop
                        ? t switch { 0 => CircuitMessageType.Reserve, 1 => CircuitMessageType.Connect, 2 => CircuitMessageType.Status, _ => throw Bad($"unknown hop message type {t}") }
                        : t switch { 0 => CircuitMessageType.Connect, 1 => CircuitMessageType.Status, _ => throw Bad($"unknown stop message type {t}") };
                    break;
                case 2:
                    var pr = new ProtoReader(r.ReadBytes());
                    while (pr.TryReadTag(out var pf))
                    {
                        if (pf == 1) peer = PeerId.FromBytes(pr.ReadBytes());
                        else if (pf == 2) AddAddress(peerAddrs, pr.ReadBytes());
                        else pr.Skip();
                    }
                    break;
                case 3 when hop:
                    hasReservation = true;
                    var rr = new ProtoReader(r.ReadBytes());
                    while (rr.TryReadTag(out var rf))
                    {
                        if (rf == 1) expire = rr.ReadVarintField();
                        else if (rf == 2) AddAddress(resAddrs, rr.ReadBytes());
                        else if (rf == 3) voucher = rr.ReadBytes().ToArray();
                        else rr.Skip();
                    }
                    break;
                case 4 when hop:
                case 3 when !hop:
                    var lr = new ProtoReader(r.ReadBytes());
                    TimeSpan? duration = null;
                    ulong? data = null;
                    while (lr.TryReadTag(out var lf))
                    {
                        if (lf == 1) duration = TimeSpan.FromSeconds(lr.ReadVarintField());
                        else if (lf == 2) data = lr.ReadVarintField();
                        else lr.Skip();
                    }
                    limit = new RelayLimit(duration, data);
                    break;
                case 5 when hop:
                case 4 when !hop:
                    var s = r.ReadVarintField();
                    status = Enum.IsDefined(typeof(RelayStatus), (int)Math.Min(s, int.MaxValue)) ? (RelayStatus)(int)s : throw Bad($"unknown relay status {s}");
                    break;
                default:
                    r.Skip();
                    break;
            }
        }
        if (type is null)
            throw Bad($"{(hop ? "hop" : "stop")} message has no type");
        return new CircuitMessage(type.Value)
        {
            Peer = peer, PeerAddresses = peerAddrs, ReservationExpire = expire, ReservationAddresses = resAddrs,
            Voucher = voucher, Limit = limit, Status = status, HasReservation = hasReservation,
        };
    }

    private static void AddAddress(List<Multiaddr> list, ReadOnlySpan<byte> bytes)
    {
        if (list.Count >= MaxAddresses)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"relay message lists more than {MaxAddresses} addresses");
        try { list.Add(Multiaddr.FromBytes(bytes)); } catch (P2PException) { /* a transport we do not know */ }
    }

    private static P2PException Bad(string why) => new(P2PErrorCode.InvalidEncoding, why);
}
