using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Protocols;

/// <summary>
/// The Identify message codec: <c>publicKey=1, listenAddrs=2, protocols=3, observedAddr=4,
/// protocolVersion=5, agentVersion=6, signedPeerRecord=8</c> (the record is ignored).
/// </summary>
public static class IdentifyCodec
{
    /// <summary>Identify's protocol id.</summary>
    public const string ProtocolId = "/ipfs/id/1.0.0";

    /// <summary>Identify-push's protocol id.</summary>
    public const string PushProtocolId = "/ipfs/id/push/1.0.0";

    private const int MaxItems = 256;

    public static byte[] Encode(IdentifyInfo info)
    {
        var w = new ProtoWriter();
        if (info.PublicKey is not null) w.WriteBytes(1, info.PublicKey);
        foreach (var a in info.ListenAddresses) w.WriteBytes(2, a.Span);
        foreach (var p in info.Protocols) w.WriteString(3, p);
        if (info.ObservedAddress is not null) w.WriteBytes(4, info.ObservedAddress.Span);
        if (info.ProtocolVersion is not null) w.WriteString(5, info.ProtocolVersion);
        if (info.AgentVersion is not null) w.WriteString(6, info.AgentVersion);
        return w.ToArray();
    }

    /// <summary>Decodes a message already bounded in size; throws <see cref="P2PException"/> (InvalidEncoding or LimitExceeded).</summary>
    public static IdentifyInfo Decode(ReadOnlySpan<byte> message)
    {
        var r = new ProtoReader(message);
        var addrs = new List<Multiaddr>();
        var protos = new List<string>();
        byte[]? key = null;
        Multiaddr? observed = null;
        string? pv = null, av = null;
        while (r.TryReadTag(out var f))
        {
            switch (f)
            {
                case 1: key = r.ReadBytes().ToArray(); break;
                case 2:
                    var ab = r.ReadBytes();
                    if (addrs.Count >= MaxItems) throw new P2PException(P2PErrorCode.LimitExceeded, $"Identify lists more than {MaxItems} addresses");
                    try { addrs.Add(Multiaddr.FromBytes(ab)); } catch (P2PException) { /* a transport we do not know */ }
                    break;
                case 3:
                    if (protos.Count >= MaxItems) throw new P2PException(P2PErrorCode.LimitExceeded, $"Identify lists more than {MaxItems} protocols");
                    protos.Add(r.ReadString());
                    break;
                case 4:
                    var ob = r.ReadBytes();
                    try { observed = Multiaddr.FromBytes(ob); } catch (P2PException) { observed = null; }
                    break;
                case 5: pv = r.ReadString(); break;
                case 6: av = r.ReadString(); break;
                default: r.Skip(); break;
            }
        }
        if (key is not null)
            Libp2pKeys.DecodeKeyMessage(key); // validates its shape
        return new IdentifyInfo
        {
            PublicKey = key, ListenAddresses = addrs, Protocols = protos, ObservedAddress = observed,
            ProtocolVersion = pv, AgentVersion = av,
        };
    }

    /// <summary>Merges a push into what was known: fields present in the push replace the old ones.</summary>
    public static IdentifyInfo Merge(IdentifyInfo? old, IdentifyInfo push, ReadOnlySpan<byte> raw)
    {
        if (old is null) return push;
        var has = new HashSet<int>();
        var r = new ProtoReader(raw);
        while (r.TryReadTag(out var f)) { has.Add(f); r.Skip(); }
        return new IdentifyInfo
        {
            PublicKey = has.Contains(1) ? push.PublicKey : old.PublicKey,
            ListenAddresses = has.Contains(2) ? push.ListenAddresses : old.ListenAddresses,
            Protocols = has.Contains(3) ? push.Protocols : old.Protocols,
            ObservedAddress = has.Contains(4) ? push.ObservedAddress : old.ObservedAddress,
            ProtocolVersion = has.Contains(5) ? push.ProtocolVersion : old.ProtocolVersion,
            AgentVersion = has.Contains(6) ? push.AgentVersion : old.AgentVersion,
        };
    }
}
