using System.Buffers;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Tests.Dht;

public sealed class KadMessageTests
{
    private static PeerId NewPeer(byte seed)
    {
        var s = new byte[32];
        s[0] = seed;
        s[1] = 7;
        using var kp = Ed25519KeyPair.FromSeed(s);
        return kp.PeerId;
    }

    [Fact]
    public void EncodesTheSpecLayoutByteForByte()
    {
        // FIND_NODE (type 4) with key "abc": field 1 varint 4, field 2 bytes "abc".
        var m = new KadMessage { Type = KadMessageType.FindNode, Key = "abc"u8.ToArray() };
        Assert.Equal(Convert.FromHexString("0804120361626"+"3"), m.Encode());
        // PUT_VALUE is type 0, the proto3 default: the field is omitted (as js-libp2p does).
        var put = new KadMessage { Type = KadMessageType.PutValue, Key = [1], Record = new KadRecord([1], [2], "t") };
        Assert.Equal(Convert.FromHexString("1201011a09" + "0a0101" + "120102" + "2a0174"), put.Encode());
        Assert.Equal(KadMessageType.PutValue, KadMessage.Decode(put.Encode()).Type);
    }

    [Fact]
    public void RoundTripsEveryField()
    {
        var p1 = NewPeer(1);
        var p2 = NewPeer(2);
        var m = new KadMessage
        {
            Type = KadMessageType.GetProviders,
            Key = [9, 8, 7],
            Record = new KadRecord([9, 8, 7], [1, 2, 3], "2026-01-01T00:00:00.000Z"),
            CloserPeers = [new KadPeer(p1, [Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001"), Multiaddr.Parse("/ip6/::1/tcp/5")], KadConnectionType.Connected)],
            ProviderPeers = [new KadPeer(p2, [])],
            ClusterLevelRaw = -3,
        };
        var d = KadMessage.Decode(m.Encode());
        Assert.Equal(m.Type, d.Type);
        Assert.Equal(m.Key, d.Key);
        Assert.Equal(m.Record!.Value, d.Record!.Value);
        Assert.Equal(m.Record.TimeReceived, d.Record.TimeReceived);
        Assert.Equal(p1, d.CloserPeers.Single().Id);
        Assert.Equal(m.CloserPeers[0].Addresses, d.CloserPeers[0].Addresses);
        Assert.Equal(KadConnectionType.Connected, d.CloserPeers[0].Connection);
        Assert.Equal(p2, d.ProviderPeers.Single().Id);
        Assert.Equal(-3, d.ClusterLevelRaw);
    }

    [Fact]
    public void FrameLengthOverTheLimitIsRefusedBeforeItsBytesArrive()
    {
        var buf = new ArrayBufferWriter<byte>();
        UnsignedVarint.Write(buf, 2_000_000);
        buf.Write(new byte[] { 1, 2, 3 });
        var seq = new ReadOnlySequence<byte>(buf.WrittenMemory);
        var e = Assert.Throws<DhtException>(() => KadFraming.TryReadFrame(ref seq, 1024 * 1024, out _));
        Assert.Equal(DhtErrorCode.LimitExceeded, e.DhtCode);
    }

    [Fact]
    public void FrameNeedsAllItsBytes()
    {
        var frame = KadFraming.ToFrame(new KadMessage { Type = KadMessageType.Ping });
        var partial = new ReadOnlySequence<byte>(frame.AsMemory(0, frame.Length - 1));
        Assert.False(KadFraming.TryReadFrame(ref partial, 1024, out _));
        var whole = new ReadOnlySequence<byte>(frame);
        Assert.True(KadFraming.TryReadFrame(ref whole, 1024, out var payload));
        Assert.True(whole.IsEmpty);
        Assert.Equal(KadMessageType.Ping, KadMessage.Decode(payload.ToArray()).Type);
    }

    [Fact]
    public void HostileMessagesAreRefusedWithTypedErrors()
    {
        var limits = new KadMessageLimits { MaxMessageSize = 4096, MaxPeers = 5, MaxKeyLength = 64 };
        Assert.Equal(DhtErrorCode.LimitExceeded, Assert.Throws<DhtException>(() => KadMessage.Decode(new byte[5000], limits)).DhtCode);
        var many = new KadMessage { Type = KadMessageType.FindNode, CloserPeers = [.. Enumerable.Range(0, 6).Select(i => new KadPeer(NewPeer((byte)i), []))] };
        Assert.Equal(DhtErrorCode.LimitExceeded, Assert.Throws<DhtException>(() => KadMessage.Decode(many.Encode(), limits)).DhtCode);
        var longKey = new KadMessage { Type = KadMessageType.GetValue, Key = new byte[65] };
        Assert.Equal(DhtErrorCode.LimitExceeded, Assert.Throws<DhtException>(() => KadMessage.Decode(longKey.Encode(), limits)).DhtCode);
        // length past the end, truncated varint, unknown type
        Assert.Equal(DhtErrorCode.InvalidMessage, Assert.Throws<DhtException>(() => KadMessage.Decode([0x12, 0x05, 1], limits)).DhtCode);
        Assert.Equal(DhtErrorCode.InvalidMessage, Assert.Throws<DhtException>(() => KadMessage.Decode([0x08, 0x80], limits)).DhtCode);
        Assert.Equal(DhtErrorCode.InvalidMessage, Assert.Throws<DhtException>(() => KadMessage.Decode([0x08, 0x09], limits)).DhtCode);
    }

    [Fact]
    public void PeersWithBadIdsAndBadAddressesAreDroppedNotFatal()
    {
        var good = NewPeer(3);
        var w = new List<byte>();
        // closerPeers[0]: id = garbage multihash
        w.AddRange([0x42, 0x04, 0x0a, 0x02, 0x99, 0x01]);
        // closerPeers[1]: good id, one garbage addr, one good addr
        var addr = Multiaddr.Parse("/ip4/9.9.9.9/tcp/1").ToBytes();
        var peer = new List<byte> { 0x0a, (byte)good.Span.Length };
        peer.AddRange(good.Span.ToArray());
        peer.AddRange([0x12, 0x02, 0xff, 0xff]);
        peer.Add(0x12); peer.Add((byte)addr.Length); peer.AddRange(addr);
        w.Add(0x42); w.Add((byte)peer.Count); w.AddRange(peer);
        var d = KadMessage.Decode(w.ToArray());
        var only = Assert.Single(d.CloserPeers);
        Assert.Equal(good, only.Id);
        Assert.Equal("/ip4/9.9.9.9/tcp/1", Assert.Single(only.Addresses).ToString());
    }

    [Fact]
    public void BootstrapMultiaddrsNeedAPeerId()
    {
        var id = NewPeer(4);
        var p = KadPeer.FromMultiaddr(Multiaddr.Parse($"/ip4/1.2.3.4/tcp/4001/p2p/{id}"));
        Assert.Equal(id, p.Id);
        Assert.Equal("/ip4/1.2.3.4/tcp/4001", Assert.Single(p.Addresses).ToString());
        Assert.Throws<DhtException>(() => KadPeer.FromMultiaddr(Multiaddr.Parse("/ip4/1.2.3.4/tcp/4001")));
    }

    [Fact]
    public void UnknownFieldsAreSkipped()
    {
        var m = new KadMessage { Type = KadMessageType.Ping }.Encode();
        byte[] withExtra = [.. m, 0xb8, 0x06, 0x01, 0xc2, 0x3e, 0x01, 0x00]; // field 103 varint, field 1000 bytes
        Assert.Equal(KadMessageType.Ping, KadMessage.Decode(withExtra).Type);
    }
}
