using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Tests.Dht;

public sealed class RoutingTableTests
{
    internal static PeerId Peer(int i)
    {
        var s = new byte[32];
        BitConverter.TryWriteBytes(s, i);
        s[31] = 0x5a;
        using var kp = Ed25519KeyPair.FromSeed(s);
        return kp.PeerId;
    }

    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    [Fact]
    public void KadIdsMeasureCommonPrefixAndMakeIdsInABucket()
    {
        var a = KadId.FromKey("x"u8);
        Assert.Equal(256, a.CommonPrefixLength(a));
        var rnd = new Random(3);
        for (var cpl = 0; cpl < 40; cpl++)
            Assert.Equal(cpl, a.CommonPrefixLength(a.RandomWithPrefix(cpl, rnd)));
        var self = KadId.FromPeer(Peer(0));
        for (var cpl = 0; cpl < 14; cpl++)
            Assert.Equal(cpl, self.CommonPrefixLength(KadId.FromKey(RefreshKeys.KeyWithPrefix(self, cpl, rnd))));
    }

    [Fact]
    public void NearestPeersMatchABruteForceSort()
    {
        var rt = new RoutingTable(Peer(0), new RoutingTableOptions { BucketSize = 20 });
        for (var i = 1; i < 400; i++)
            rt.TryAdd(Peer(i), [Multiaddr.Parse($"/ip4/10.{i % 250}.{i / 250}.1/tcp/1")], T0);
        var rnd = new Random(5);
        for (var t = 0; t < 50; t++)
        {
            var key = new byte[8];
            rnd.NextBytes(key);
            var target = KadId.FromKey(key);
            var expected = rt.All().OrderBy(e => e.Id.Xor(target)).Take(20).Select(e => e.Peer).ToList();
            Assert.Equal(expected, rt.NearestPeers(target, 20).Select(e => e.Peer).ToList());
        }
    }

    [Fact]
    public void FloodFromOneSlash24IsCappedAndHonestPeersStay()
    {
        var metrics = new DhtMetrics();
        var rt = new RoutingTable(Peer(0), new RoutingTableOptions(), metrics);
        var honest = Enumerable.Range(1, 60).Select(Peer).ToList();
        for (var i = 0; i < honest.Count; i++)
            rt.TryAdd(honest[i], [Multiaddr.Parse($"/ip4/{20 + i}.1.2.3/tcp/4001")], T0);
        var honestCount = rt.Count;
        var rejectedBefore = metrics.RejectedDiversity + metrics.RejectedBucketFull;
        for (var i = 0; i < 500; i++)
            rt.TryAdd(Peer(10_000 + i), [Multiaddr.Parse($"/ip4/203.0.113.{i % 250 + 1}/tcp/4001")], T0);
        Assert.Equal(honestCount, honest.Count(rt.Contains));
        var flooders = rt.All().Count(e => RoutingTable.IpGroup(e.Addresses[0]) == "ip4:203.0.113");
        Assert.InRange(flooders, 1, 10);
        // every flooder but the few admitted is refused: by the /24 cap, or by a bucket already full of honest peers
        Assert.Equal(500 - flooders, metrics.RejectedDiversity + metrics.RejectedBucketFull - rejectedBefore);
        Assert.True(metrics.RejectedDiversity >= 400, $"rejected {metrics.RejectedDiversity}");
        // the same cap holds for IPv6 /48
        var rt6 = new RoutingTable(Peer(0), new RoutingTableOptions(), metrics);
        for (var i = 0; i < 100; i++)
            rt6.TryAdd(Peer(20_000 + i), [Multiaddr.Parse($"/ip6/2001:db8:1:{i:x}::1/tcp/1")], T0);
        Assert.InRange(rt6.Count, 1, 10);
    }

    [Fact]
    public void FullBucketKeepsItsLongLivedPeersAndEvictsOnlySilentOnes()
    {
        var metrics = new DhtMetrics();
        var rt = new RoutingTable(Peer(0), new RoutingTableOptions { BucketSize = 2, MaxConsecutiveFailures = 2 }, metrics);
        // find three peers that fall in bucket 0
        var self = rt.SelfId;
        var inBucket0 = Enumerable.Range(1, 100).Select(Peer).Where(p => self.CommonPrefixLength(KadId.FromPeer(p)) == 0).Take(3).ToList();
        Assert.Equal(RoutingAddResult.Added, rt.TryAdd(inBucket0[0], [], T0));
        Assert.Equal(RoutingAddResult.Added, rt.TryAdd(inBucket0[1], [], T0));
        Assert.Equal(RoutingAddResult.BucketFull, rt.TryAdd(inBucket0[2], [], T0.AddMinutes(1)));
        Assert.False(rt.Contains(inBucket0[2]));
        Assert.Equal(inBucket0[0], rt.StalestInFullBucket(inBucket0[2])!.Peer);
        Assert.False(rt.MarkFailed(inBucket0[0], T0));     // one miss is forgiven
        rt.MarkAlive(inBucket0[0], T0);                      // and an answer resets the count
        Assert.False(rt.MarkFailed(inBucket0[0], T0));
        Assert.True(rt.MarkFailed(inBucket0[0], T0));        // two misses in a row evict
        Assert.False(rt.Contains(inBucket0[0]));
        Assert.True(rt.Contains(inBucket0[2]));              // the waiting candidate took the place
        Assert.Equal(1, metrics.EvictedUnresponsive);
        Assert.Equal(RoutingAddResult.Self, rt.TryAdd(Peer(0), [], T0));
    }
}
