using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// A kad-dht <c>Message</c> (libp2p/specs kad-dht): requests and responses share the type. Encoding is
/// hand-written proto3; the wire frame is an unsigned-varint length then the message.
/// </summary>
public sealed record KadMessage
{
    /// <summary>What the message asks or answers.</summary>
    public KadMessageType Type { get; init; }

    /// <summary>The key of PUT_VALUE, GET_VALUE, ADD_PROVIDER, GET_PROVIDERS and FIND_NODE (for FIND_NODE, PeerId bytes or any key).</summary>
    public byte[] Key { get; init; } = [];

    /// <summary>The record of PUT_VALUE and of a GET_VALUE response.</summary>
    public KadRecord? Record { get; init; }

    /// <summary>Peers closer to the key (responses).</summary>
    public IReadOnlyList<KadPeer> CloserPeers { get; init; } = [];

    /// <summary>Providers of the key (GET_PROVIDERS response, ADD_PROVIDER request).</summary>
    public IReadOnlyList<KadPeer> ProviderPeers { get; init; } = [];

    /// <summary>Unused by the protocol; carried for fidelity.</summary>
    public int ClusterLevelRaw { get; init; }

    /// <summary>Encodes the message (no length prefix).</summary>
    public byte[] Encode()
    {
        var w = new ProtoWriter();
        WriteTo(w);
        return w.ToArray();
    }

    internal void WriteTo(ProtoWriter w)
    {
        if (Type != KadMessageType.PutValue)
            w.WriteVarint(1, (ulong)Type);
        if (Key.Length > 0)
            w.WriteBytes(2, Key);
        if (Record is { } r)
        {
            var rw = new ProtoWriter();
            if (r.Key.Length > 0) rw.WriteBytes(1, r.Key);
            if (r.Value.Length > 0) rw.WriteBytes(2, r.Value);
            if (r.TimeReceived.Length > 0) rw.WriteString(5, r.TimeReceived);
            w.WriteBytes(3, rw.WrittenSpan);
        }
        foreach (var p in CloserPeers) w.WriteBytes(8, EncodePeer(p));
        foreach (var p in ProviderPeers) w.WriteBytes(9, EncodePeer(p));
        if (ClusterLevelRaw != 0)
            w.WriteVarint(10, (ulong)(long)ClusterLevelRaw);
    }

    private static byte[] EncodePeer(KadPeer p)
    {
        var w = new ProtoWriter(64);
        w.WriteBytes(1, p.Id.Span);
        foreach (var a in p.Addresses) w.WriteBytes(2, a.Span);
        if (p.Connection != KadConnectionType.NotConnected)
            w.WriteVarint(3, (ulong)p.Connection);
        return w.ToArray();
    }

    /// <summary>
    /// Decodes one message already cut from its frame. Throws <see cref="DhtException"/>: LimitExceeded
    /// when it breaks <paramref name="limits"/>, InvalidMessage when malformed. Listed peers with a bad
    /// PeerId are dropped, as are addresses that do not parse.
    /// </summary>
    public static KadMessage Decode(ReadOnlySpan<byte> data, KadMessageLimits? limits = null)
    {
        limits ??= KadMessageLimits.Default;
        if (data.Length > limits.MaxMessageSize)
            throw new DhtException(DhtErrorCode.LimitExceeded, $"DHT message of {data.Length} bytes exceeds {limits.MaxMessageSize}");
        var r = new ProtoReader(data, DhtException.InvalidMessage);
        var type = KadMessageType.PutValue;
        byte[] key = [];
        KadRecord? record = null;
        List<KadPeer>? closer = null, providers = null;
        var peerCount = 0;
        var cluster = 0;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1:
                    var t = r.ReadVarintField();
                    if (t > (ulong)KadMessageType.Ping)
                        throw new DhtException(DhtErrorCode.InvalidMessage, $"unknown DHT message type {t}");
                    type = (KadMessageType)t;
                    break;
                case 2:
                    key = ReadKey(ref r, limits);
                    break;
                case 3:
                    record = DecodeRecord(r.ReadBytes(), limits);
                    break;
                case 8 or 9:
                    if (++peerCount > limits.MaxPeers)
                        throw new DhtException(DhtErrorCode.LimitExceeded, $"DHT message lists more than {limits.MaxPeers} peers");
                    var peer = DecodePeer(r.ReadBytes(), limits);
                    if (peer is not null)
                        (field == 8 ? closer ??= [] : providers ??= []).Add(peer);
                    break;
                case 10:
                    cluster = unchecked((int)r.ReadVarintField());
                    break;
                default:
                    r.Skip();
                    break;
            }
        }
        return new KadMessage
        {
            Type = type,
            Key = key,
            Record = record,
            CloserPeers = closer is null ? [] : closer,
            ProviderPeers = providers is null ? [] : providers,
            ClusterLevelRaw = cluster,
        };
    }

    private static byte[] ReadKey(ref ProtoReader r, KadMessageLimits limits)
    {
        var k = r.ReadBytes();
        if (k.Length > limits.MaxKeyLength)
            throw new DhtException(DhtErrorCode.LimitExceeded, $"DHT key of {k.Length} bytes exceeds {limits.MaxKeyLength}");
        return k.ToArray();
    }

    private static KadRecord DecodeRecord(ReadOnlySpan<byte> data, KadMessageLimits limits)
    {
        var r = new ProtoReader(data, DhtException.InvalidMessage);
        byte[] key = [], value = [];
        var time = "";
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1: key = ReadKey(ref r, limits); break;
                case 2: value = r.ReadBytes().ToArray(); break;
                case 5: time = r.ReadString(); break;
                default: r.Skip(); break;
            }
        }
        return new KadRecord(key, value, time);
    }

    private static KadPeer? DecodePeer(ReadOnlySpan<byte> data, KadMessageLimits limits)
    {
        var r = new ProtoReader(data, DhtException.InvalidMessage);
        PeerId? id = null;
        var bad = false;
        List<Multiaddr>? addrs = null;
        var conn = KadConnectionType.NotConnected;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1:
                    var idBytes = r.ReadBytes();
                    try { id = PeerId.FromBytes(idBytes); }
                    catch (P2PException) { bad = true; }
                    break;
                case 2:
                    var ab = r.ReadBytes();
                    if ((addrs?.Count ?? 0) >= limits.MaxAddressesPerPeer)
                        break;
                    try { (addrs ??= []).Add(Multiaddr.FromBytes(ab)); }
                    catch (P2PException) { }
                    break;
                case 3:
                    var c = r.ReadVarintField();
                    conn = c <= 3 ? (KadConnectionType)c : KadConnectionType.NotConnected;
                    break;
                default:
                    r.Skip();
                    break;
            }
        }
        return id is null || bad ? null : new KadPeer(id, addrs is null ? [] : addrs, conn);
    }
}
