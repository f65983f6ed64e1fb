using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Tests.DhtSim;

namespace InferenceMesh.P2P.Tests.Dht;

/// <summary>The DHT's operations end to end over the deterministic in-memory network.</summary>
public sealed class DhtNetworkTests
{
    private static DhtSimulation Small(int nodes = 40, double loss = 0)
    {
        var sim = new DhtSimulation(new SimOptions { Nodes = nodes, Seed = 11, Network = new SimNetworkOptions { LossRate = loss, RoundTripCodec = true } });
        sim.Build();
        return sim;
    }

    [Fact]
    public void PutAndGetPkAndCustomNamespaceRecordsFromOtherNodes()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        using var kp = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[3].Peer.Id]);
        var pkKey = PublicKeyRecordValidator.KeyFor(kp.PeerId);
        var stored = sim.Scheduler.Run(() => nodes[3].Dht.PutValueAsync(pkKey, kp.PublicKeyProtobuf));
        Assert.True(stored >= 10, $"stored at {stored}");
        var got = sim.Scheduler.Run(() => nodes[30].Dht.GetValueAsync(pkKey));
        Assert.Equal(kp.PublicKeyProtobuf, got.Value);

        var key = "/sim/hello"u8.ToArray();
        sim.Scheduler.Run(() => nodes[5].Dht.PutValueAsync(key, "world"u8.ToArray()));
        Assert.Equal("world"u8.ToArray(), sim.Scheduler.Run(() => nodes[21].Dht.GetValueAsync(key)).Value);
        Assert.Null(sim.Scheduler.Run(() => nodes[21].Dht.GetValueAsync("/sim/absent"u8.ToArray())).Value);
        // an unknown namespace is refused before anything is sent
        var e = Assert.Throws<DhtException>(() => sim.Scheduler.Run(() => nodes[5].Dht.PutValueAsync("/other/x"u8.ToArray(), [1])));
        Assert.Equal(DhtErrorCode.UnknownNamespace, e.DhtCode);
    }

    [Fact]
    public void ProvidersAreFoundAndExpireUnlessRepublished()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        var cid = "bafy-some-content"u8.ToArray();
        Assert.True(sim.Scheduler.Run(() => nodes[7].Dht.ProvideAsync(cid)) >= 10);
        var found = sim.Scheduler.Run(() => nodes[33].Dht.FindProvidersAsync(cid));
        Assert.Equal(nodes[7].Peer.Id, Assert.Single(found.Providers).Id);
        Assert.Equal(nodes[7].Peer.Addresses, found.Providers[0].Addresses);

        // after the provider validity every holder drops it...
        sim.Scheduler.Advance(TimeSpan.FromHours(49));
        foreach (var n in nodes.Where(n => n != nodes[7]))
            sim.Scheduler.Run(() => n.Dht.RunMaintenanceAsync());
        Assert.True(nodes.Where(n => n != nodes[7]).Sum(n => n.Dht.Metrics.ExpiredRecords) > 0);
        // ...but the provider's own maintenance re-announced it before anyone asks
        sim.Scheduler.Run(() => nodes[7].Dht.RunMaintenanceAsync());
        found = sim.Scheduler.Run(() => nodes[33].Dht.FindProvidersAsync(cid));
        Assert.Single(found.Providers);
    }

    [Fact]
    public void RecordsExpireAfterMaxAgeAndPublishersRepublish()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        var key = "/sim/ttl"u8.ToArray();
        sim.Scheduler.Run(() => nodes[2].Dht.PutValueAsync(key, [42]));
        sim.Scheduler.Advance(TimeSpan.FromHours(37));
        // nobody holds a live copy now: only the publisher's maintenance brings it back
        Assert.Null(sim.Scheduler.Run(() => nodes[9].Dht.GetValueAsync(key)).Value);
        sim.Scheduler.Run(() => nodes[2].Dht.RunMaintenanceAsync());
        Assert.Equal([42], sim.Scheduler.Run(() => nodes[9].Dht.GetValueAsync(key)).Value);
    }

    [Fact]
    public void SpanAnnouncementsListWhoServesEachBlockAndLapseAfterTheirTtl()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        const string model = "0f0e0d0c";
        Ed25519KeyPair Id(int i) => Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[i].Peer.Id]);
        using var s1 = Id(1);
        using var s2 = Id(2);
        Assert.Equal(3, sim.Scheduler.Run(() => new SpanDirectory(nodes[1].Dht, s1).AnnounceAsync(model, new BlockRange(0, 3), 50, ServerState.Online, 8192)));
        Assert.Equal(3, sim.Scheduler.Run(() => new SpanDirectory(nodes[2].Dht, s2).AnnounceAsync(model, new BlockRange(2, 5), 20, ServerState.Joining, 1024)));
        var client = new SpanDirectory(nodes[25].Dht);
        var table = sim.Scheduler.Run(() => client.ListServersAsync(model, 6));
        Assert.Equal([1, 1, 2, 1, 1, 0], table.Select(b => b.Count));
        Assert.Equal(nodes[1].Peer.Id, table[2][0].Peer); // fastest first
        Assert.Equal(ServerState.Joining, table[2][1].State);
        Assert.Equal(new BlockRange(2, 5), table[4][0].Span);

        // server 1 refreshes after 60 s, server 2 goes silent: at 130 s only server 1 is listed
        sim.Scheduler.Advance(TimeSpan.FromSeconds(60));
        sim.Scheduler.Run(() => new SpanDirectory(nodes[1].Dht, s1).AnnounceAsync(model, new BlockRange(0, 3), 55, ServerState.Online, 4096));
        sim.Scheduler.Advance(TimeSpan.FromSeconds(70));
        table = sim.Scheduler.Run(() => client.ListServersAsync(model, 6));
        Assert.Equal([1, 1, 1, 0, 0, 0], table.Select(b => b.Count));
        Assert.Equal(55, table[0][0].Throughput);
    }

    [Fact]
    public void HostilePutValuesAreRefusedCountedAndDoNotDisplaceHonestEntries()
    {
        var sim = Small(20);
        var nodes = sim.AllNodes;
        var target = nodes[4].Dht;
        var attacker = nodes[9].Peer;
        const string model = "feed";
        var key = SpanRecordValidator.KeyFor(model, 0);
        using var honest = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[1].Peer.Id]);
        var now = sim.Scheduler.GetUtcNow();
        var info = new ServerInfo { Peer = honest.PeerId, ModelId = model, Block = 0, Span = new BlockRange(0, 1), IssuedAt = now, ExpiresAt = now.AddSeconds(120), Throughput = 1 };
        var good = SpanRecordValidator.Sign(info, honest);
        target.HandleRequest(attacker, true, Put(key, SpanRecordValidator.EncodeValue([good])));

        // forged: the attacker rewrites the honest server's throughput
        var forged = SpanRecordValidator.Sign(info, honest);
        var tampered = ServerInfoTamper(forged);
        Assert.Throws<DhtException>(() => target.HandleRequest(attacker, true, Put(key, SpanRecordValidator.EncodeValue([tampered]))));
        // expired
        using var other = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[2].Peer.Id]);
        var old = SpanRecordValidator.Sign(info with { Peer = other.PeerId, IssuedAt = now.AddSeconds(-300), ExpiresAt = now.AddSeconds(-180) }, other);
        Assert.Throws<DhtException>(() => target.HandleRequest(attacker, true, Put(key, SpanRecordValidator.EncodeValue([old]))));
        // record key different from message key
        Assert.Throws<DhtException>(() => target.HandleRequest(attacker, true, new KadMessage { Type = KadMessageType.PutValue, Key = key, Record = new KadRecord([1], [2]) }));
        // a provider record for someone else
        Assert.Null(target.HandleRequest(attacker, true, new KadMessage { Type = KadMessageType.AddProvider, Key = [1, 2], ProviderPeers = [nodes[1].Peer] }));

        Assert.Equal(3, target.Metrics.InvalidRecords);
        Assert.Equal(1, target.Metrics.ProviderRecordsRejected);
        Assert.Empty(target.Providers.Get([1, 2], now, 10));
        var validator = (SpanRecordValidator)target.Options.Validators.For(key);
        Assert.True(validator.BadSignatures >= 1);
        Assert.True(validator.ExpiredEntries >= 1);
        var stored = validator.ReadEntries(key, target.Records.Get(key)!.Value);
        Assert.Equal(honest.PeerId, Assert.Single(stored).Peer);
        Assert.Equal(1, stored[0].Throughput);
    }

    [Fact]
    public void ReadersDropForgedAndExpiredEntriesServedByALyingHolder()
    {
        var sim = Small(30);
        var nodes = sim.AllNodes;
        const string model = "c0ffee";
        var key = SpanRecordValidator.KeyFor(model, 0);
        using var honest = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[1].Peer.Id]);
        using var victim = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[2].Peer.Id]);
        Assert.Equal(1, sim.Scheduler.Run(() => new SpanDirectory(nodes[1].Dht, honest).AnnounceAsync(model, new BlockRange(0, 1), 10, ServerState.Online, 100)));
        // every holder of the key turns liar: it serves, besides the honest entry, one entry claiming to be
        // from another server with a broken signature, and one that expired long ago
        var now = sim.Scheduler.GetUtcNow();
        var fake = new ServerInfo { Peer = victim.PeerId, ModelId = model, Block = 0, Span = new BlockRange(0, 1), IssuedAt = now, ExpiresAt = now.AddSeconds(120), Throughput = 1e9 };
        var forged = SpanRecordValidator.Sign(fake, victim);
        forged[^5] ^= 0x10;
        var expired = SpanRecordValidator.Sign(fake with { IssuedAt = now.AddHours(-1), ExpiresAt = now.AddMinutes(-58) }, victim);
        var holders = nodes.Where(n => n.Dht.Records.Get(key) is not null).ToList();
        Assert.NotEmpty(holders);
        var bad = SpanRecordValidator.EncodeValue([forged, expired]);
        foreach (var h in holders)
            h.Tamper = m => m.Record is { } r ? m with { Record = r with { Value = [.. r.Value, .. bad] } } : m;
        var reader = nodes.First(n => !holders.Contains(n) && n != nodes[1]);
        var servers = sim.Scheduler.Run(() => new SpanDirectory(reader.Dht).GetServersAsync(model, 0));
        Assert.Equal(honest.PeerId, Assert.Single(servers).Peer);
        var v = (SpanRecordValidator)reader.Dht.Options.Validators.For(key);
        Assert.True(v.BadSignatures > 0 && v.ExpiredEntries > 0, $"bad {v.BadSignatures}, expired {v.ExpiredEntries}");
    }

    [Fact]
    public void FloodOfFakePeersFromOneSlash24KeepsTheHonestRoutingTable()
    {
        var sim = Small(30);
        var victim = sim.AllNodes[0].Dht;
        var honestBefore = victim.RoutingTable.All().Select(e => e.Peer).ToHashSet();
        Assert.True(honestBefore.Count >= 20);
        for (var i = 0; i < 1000; i++)
        {
            var fake = new KadPeer(RoutingTableTests.Peer(100_000 + i), [Multiaddr.Parse($"/ip4/198.51.100.{i % 254 + 1}/tcp/4001")]);
            victim.HandleRequest(fake, true, new KadMessage { Type = KadMessageType.FindNode, Key = fake.Id.ToBytes() });
        }
        var after = victim.RoutingTable.All();
        Assert.Subset(after.Select(e => e.Peer).ToHashSet(), honestBefore);
        Assert.InRange(after.Count(e => RoutingTable.IpGroup(e.Addresses[0]) == "ip4:198.51.100"), 0, 10);
        Assert.True(victim.Metrics.RejectedDiversity >= 990);
        // lookups still work from the flooded node
        var found = sim.Scheduler.Run(() => victim.FindPeerAsync(sim.AllNodes[17].Peer.Id));
        Assert.NotNull(found.Peer);
    }

    [Fact]
    public void ClientModeNodesQueryButStayOutOfRoutingTables()
    {
        var sim = Small(30);
        var client = sim.AddAndJoin(o => o with { Mode = DhtMode.Client });
        Assert.True(client.Dht.RoutingTable.Count > 0);
        Assert.DoesNotContain(sim.AllNodes.Where(n => n != client), n => n.Dht.RoutingTable.Contains(client.Peer.Id));
        Assert.Throws<DhtException>(() => client.Dht.HandleRequest(sim.AllNodes[1].Peer, true, new KadMessage { Type = KadMessageType.Ping }));
        var key = "/sim/from-client"u8.ToArray();
        Assert.True(sim.Scheduler.Run(() => client.Dht.PutValueAsync(key, [7])) > 0);
        Assert.Equal([7], sim.Scheduler.Run(() => sim.AllNodes[3].Dht.GetValueAsync(key)).Value);
    }

    [Fact]
    public void UnresponsivePeersAreEvictedDuringLookups()
    {
        var sim = Small(60);
        var nodes = sim.AllNodes;
        foreach (var n in nodes.Skip(40)) n.Online = false;
        var probe = nodes[0].Dht;
        var deadBefore = nodes.Skip(40).Count(n => probe.RoutingTable.Contains(n.Peer.Id));
        Assert.True(deadBefore > 0);
        for (var i = 0; i < 20; i++)
        {
            var target = nodes[1 + i].Peer.Id;
            var r = sim.Scheduler.Run(() => probe.GetClosestPeersAsync(target.ToBytes()));
            Assert.DoesNotContain(r.Peers, p => !sim.Nodes(p.Id).Online);
        }
        var deadAfter = nodes.Skip(40).Count(n => probe.RoutingTable.Contains(n.Peer.Id));
        Assert.True(deadAfter < deadBefore, $"{deadAfter} of {deadBefore} dead peers still listed");
        Assert.True(probe.Metrics.EvictedUnresponsive > 0);
    }

    [Fact]
    public void BootstrapWithNoAnsweringSeedFailsWithNoPeers()
    {
        var sim = Small(10);
        foreach (var n in sim.AllNodes) n.Online = false;
        var e = Assert.Throws<DhtException>(() => sim.AddAndJoin());
        Assert.Equal(DhtErrorCode.NoPeers, e.DhtCode);
    }

    private static KadMessage Put(byte[] key, byte[] value) =>
        new() { Type = KadMessageType.PutValue, Key = key, Record = new KadRecord(key, value) };

    // Flips a byte inside the signed body (the throughput field), leaving the signature as it was.
    private static byte[] ServerInfoTamper(byte[] signed)
    {
        var copy = (byte[])signed.Clone();
        copy[copy.Length / 3] ^= 0x40;
        return copy;
    }
}
