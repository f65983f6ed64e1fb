using System.Buffers;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>The kad-dht <c>Message.MessageType</c>; a response carries its request's type.</summary>
public enum KadMessageType
{
    /// <summary>Store a record (0 is the protobuf default: js-libp2p omits the field).</summary>
    PutValue = 0,
    /// <summary>Fetch a record and closer peers.</summary>
    GetValue = 1,
    /// <summary>Announce the sender as a provider of a key.</summary>
    AddProvider = 2,
    /// <summary>Fetch the providers of a key and closer peers.</summary>
    GetProviders = 3,
    /// <summary>Fetch the peers closest to a key.</summary>
    FindNode = 4,
    /// <summary>Liveness check (deprecated in the spec; still answered).</summary>
    Ping = 5,
}

/// <summary>The kad-dht <c>Message.ConnectionType</c> of a listed peer.</summary>
public enum KadConnectionType
{
    /// <summary>No connection and no extra information (default).</summary>
    NotConnected = 0,
    /// <summary>The sender has a live connection to the peer.</summary>
    Connected = 1,
    /// <summary>The sender recently connected to the peer.</summary>
    CanConnect = 2,
    /// <summary>The sender recently failed to connect to the peer.</summary>
    CannotConnect = 3,
}

/// <summary>A peer listed in a message (<c>Message.Peer</c>): PeerId, addresses, connection hint.</summary>
public sealed record KadPeer(PeerId Id, IReadOnlyList<Multiaddr> Addresses, KadConnectionType Connection = KadConnectionType.NotConnected)
{
    /// <summary>A peer from a multiaddr ending in <c>/p2p/&lt;PeerId&gt;</c> (a <c>--bootstrap</c> argument); throws <see cref="DhtException"/> (InvalidMessage) without one.</summary>
    public static KadPeer FromMultiaddr(Multiaddr address)
    {
        var id = address.PeerId ?? throw new DhtException(DhtErrorCode.InvalidMessage, $"{address} does not end in /p2p/<PeerId>");
        return new KadPeer(id, [address.WithoutPeerId()]);
    }
}

/// <summary>
/// The kad-dht <c>Record</c>: key, value and <c>timeReceived</c> (RFC 3339 text, set by the receiver;
/// js-libp2p requires it to be present).
/// </summary>
public sealed record KadRecord(byte[] Key, byte[] Value, string TimeReceived = "");

/// <summary>Limits applied when decoding a kad-dht message from the wire.</summary>
public sealed record KadMessageLimits
{
    /// <summary>Largest message accepted, in bytes (length prefix excluded). go-libp2p uses 4 MiB; the mesh needs far less.</summary>
    public int MaxMessageSize { get; init; } = 1024 * 1024;

    /// <summary>Most entries in closerPeers plus providerPeers.</summary>
    public int MaxPeers { get; init; } = 100;

    /// <summary>Most addresses kept per listed peer (the rest are dropped).</summary>
    public int MaxAddressesPerPeer { get; init; } = 16;

    /// <summary>Longest key, in bytes.</summary>
    public int MaxKeyLength { get; init; } = 1024;

    /// <summary>The defaults.</summary>
    public static KadMessageLimits Default { get; } = new();
}

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

/// <summary>The wire frame of kad-dht: unsigned-varint length, then the protobuf message.</summary>
public static class KadFraming
{
    /// <summary>Writes one framed message.</summary>
    public static void Write(IBufferWriter<byte> output, KadMessage message)
    {
        var w = new ProtoWriter();
        message.WriteTo(w);
        Varint.Write(output, (ulong)w.Length);
        output.Write(w.WrittenSpan);
    }

    /// <summary>One framed message as bytes.</summary>
    public static byte[] ToFrame(KadMessage message)
    {
        var b = new ArrayBufferWriter<byte>();
        Write(b, message);
        return b.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Cuts one frame from <paramref name="buffer"/>. Returns false (buffer unchanged) when more bytes are
    /// needed; throws <see cref="DhtException"/> (LimitExceeded) as soon as the length prefix exceeds
    /// <paramref name="maxMessageSize"/>, before any memory is taken for it. On true, <paramref name="buffer"/>
    /// is advanced past the frame.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxMessageSize, out ReadOnlySequence<byte> payload)
    {
        payload = default;
        var reader = new SequenceReader<byte>(buffer);
        ulong len;
        try
        {
            if (!Varint.TryRead(ref reader, out len))
                return false;
        }
        catch (P2PException e)
        {
            throw new DhtException(DhtErrorCode.InvalidMessage, "bad DHT frame length prefix", e);
        }
        if (len > (ulong)maxMessageSize)
            throw new DhtException(DhtErrorCode.LimitExceeded, $"DHT message of {len} bytes exceeds {maxMessageSize}");
        if (reader.Remaining < (long)len)
            return false;
        payload = buffer.Slice(reader.Position, (long)len);
        buffer = buffer.Slice(payload.End);
        return true;
    }
}
