using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Tests.DhtSim;

namespace InferenceMesh.P2P.Tests.Dht;

public sealed class RecordTests
{
    private sealed class FixedTime(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);
    private const string Model = "ab12cd";

    private static ServerInfo Info(Ed25519KeyPair kp, int block, DateTimeOffset issued, double tps = 10) => new()
    {
        Peer = kp.PeerId,
        Addresses = [Multiaddr.Parse("/ip4/8.8.4.4/tcp/4001")],
        ModelId = Model,
        Block = block,
        Span = new BlockRange(0, 4),
        Throughput = tps,
        State = ServerState.Online,
        FreeCacheTokens = 4096,
        IssuedAt = issued,
        ExpiresAt = issued.AddSeconds(120),
    };

    [Fact]
    public void PkRecordsMustHashToThePeerInTheirKey()
    {
        using var a = Ed25519KeyPair.Generate();
        using var b = Ed25519KeyPair.Generate();
        var v = RecordValidators.WithDefaults();
        var key = PublicKeyRecordValidator.KeyFor(a.PeerId);
        v.For(key).Validate(key, a.PublicKeyProtobuf);
        Assert.Equal(DhtErrorCode.InvalidRecord, Assert.Throws<DhtException>(() => v.For(key).Validate(key, b.PublicKeyProtobuf)).DhtCode);
        Assert.Equal(DhtErrorCode.InvalidRecord, Assert.Throws<DhtException>(() => v.For(key).Validate("/pk/xx"u8, a.PublicKeyProtobuf)).DhtCode);
        Assert.Equal(DhtErrorCode.UnknownNamespace, Assert.Throws<DhtException>(() => v.For("/nope/1"u8)).DhtCode);
        Assert.Equal(DhtErrorCode.UnknownNamespace, Assert.Throws<DhtException>(() => v.For("noslash"u8)).DhtCode);
    }

    [Fact]
    public void SpanEntriesAreCheckedSignatureKeyAndExpiryAndCounted()
    {
        using var a = Ed25519KeyPair.Generate();
        using var b = Ed25519KeyPair.Generate();
        var time = new FixedTime(T0);
        var v = new SpanRecordValidator(time);
        var key = SpanRecordValidator.KeyFor(Model, 2);
        var good = SpanRecordValidator.Sign(Info(a, 2, T0), a);
        v.Validate(key, SpanRecordValidator.EncodeValue([good]));
        var entry = Assert.Single(v.ReadEntries(key, SpanRecordValidator.EncodeValue([good])));
        Assert.Equal(a.PeerId, entry.Peer);
        Assert.Equal(new BlockRange(0, 4), entry.Span);
        Assert.Equal(4096, entry.FreeCacheTokens);

        // a flipped bit in the signature
        var forged = (byte[])good.Clone();
        forged[^1] ^= 1;
        Assert.Throws<DhtException>(() => v.Validate(key, SpanRecordValidator.EncodeValue([forged])));
        Assert.Equal(1, v.BadSignatures);
        // b cannot sign for a
        Assert.Throws<ArgumentException>(() => SpanRecordValidator.Sign(Info(a, 2, T0), b));
        // an entry for block 2 stored under block 3's key
        Assert.Throws<DhtException>(() => v.Validate(SpanRecordValidator.KeyFor(Model, 3), SpanRecordValidator.EncodeValue([good])));
        Assert.Equal(1, v.MalformedEntries);
        // expired
        time.Now = T0.AddSeconds(121);
        Assert.Throws<DhtException>(() => v.Validate(key, SpanRecordValidator.EncodeValue([good])));
        Assert.Equal(1, v.ExpiredEntries);
        // one good entry among bad ones: valid, and merging keeps only the good one
        time.Now = T0;
        var mixed = SpanRecordValidator.EncodeValue([forged, good]);
        v.Validate(key, mixed);
        Assert.Single(v.ReadEntries(key, v.Merge(key, mixed, [])));
    }

    [Fact]
    public void SpanValuesMergeOneLatestEntryPerServer()
    {
        using var a = Ed25519KeyPair.Generate();
        using var b = Ed25519KeyPair.Generate();
        var v = new SpanRecordValidator(new FixedTime(T0.AddSeconds(30)));
        var key = SpanRecordValidator.KeyFor(Model, 1);
        var a1 = SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(Info(a, 1, T0, tps: 1), a)]);
        var a2 = SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(Info(a, 1, T0.AddSeconds(20), tps: 2), a)]);
        var b1 = SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(Info(b, 1, T0, tps: 5), b)]);
        var merged = v.Merge(key, v.Merge(key, a2, b1), a1);
        var entries = v.ReadEntries(key, merged);
        Assert.Equal(2, entries.Count);
        Assert.Equal(2, entries.Single(e => e.Peer == a.PeerId).Throughput);
    }

    [Fact]
    public void LifetimeLongerThanAllowedIsRefused()
    {
        using var a = Ed25519KeyPair.Generate();
        var v = new SpanRecordValidator(new FixedTime(T0));
        var key = SpanRecordValidator.KeyFor(Model, 0);
        var forever = Info(a, 0, T0) with { Block = 0, ExpiresAt = T0.AddDays(365) };
        Assert.Throws<DhtException>(() => v.Validate(key, SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(forever, a)])));
        Assert.Equal(1, v.ExpiredEntries);
    }

    [Fact]
    public void TheStoreIsBoundedByBytesAsWellAsByCount()
    {
        var store = new RecordStore(maxRecords: 100, maxBytes: 3 * (8 + 1000));
        StoredRecord Record(int id, int size) => new(BitConverter.GetBytes((long)id), new byte[size], T0);
        for (var i = 0; i < 3; i++) Assert.True(store.Put(Record(i, 1000)));
        Assert.Equal(3 * 1008, store.Bytes);
        Assert.False(store.Put(Record(3, 1000)), "a fourth 1,000-byte value is over the byte cap though the count allows it");
        Assert.False(store.Put(Record(0, 1001)), "a replacement may not grow past the cap");
        Assert.True(store.Put(Record(0, 10)), "a smaller replacement frees room");
        Assert.True(store.Put(Record(3, 980)));
        Assert.Equal(4, store.Count);
        Assert.Equal(18 + 1008 + 1008 + 988, store.Bytes);
        Assert.Equal(4, store.Expire(T0.AddSeconds(1)));
        Assert.Equal(0, store.Bytes);
    }
}
