using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Tests.DhtSim;

namespace InferenceMesh.P2P.Tests.Dht;

/// <summary>Fraud reports and their content-addressed evidence over the deterministic in-memory DHT.</summary>
public sealed class FraudReportDirectoryTests
{
    private const string Model = "5eed";

    private static DhtSimulation Small()
    {
        var sim = new DhtSimulation(new SimOptions { Nodes = 30, Seed = 5, Network = new SimNetworkOptions { RoundTripCodec = true } });
        sim.Build();
        return sim;
    }

    private static byte[] Evidence(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void EvidenceSpanningSeveralChunksIsReadBackWholeAndReportsOfTwoReportersMerge()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        using var reporter1 = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[1].Peer.Id]);
        using var reporter2 = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[2].Peer.Id]);
        var accused = nodes[3].Peer.Id;
        var first = Evidence(3 * BlobRecordValidator.MaxValueLength + 100, 1);
        var second = Evidence(500, 2);
        var report = sim.Scheduler.Run(() => new FraudReportDirectory(nodes[1].Dht, reporter1).PublishAsync(Model, accused, first));
        Assert.Equal(4, report.Chunks.Count);
        sim.Scheduler.Run(() => new FraudReportDirectory(nodes[2].Dht, reporter2).PublishAsync(Model, accused, second));

        var read = sim.Scheduler.Run(() => new FraudReportDirectory(nodes[25].Dht).ReadAsync(Model, accused));
        Assert.Equal(2, read.Count);
        Assert.Equal(first, read.Single(r => r.Report.Reporter == reporter1.PeerId).Evidence);
        Assert.Equal(second, read.Single(r => r.Report.Reporter == reporter2.PeerId).Evidence);
        Assert.Empty(sim.Scheduler.Run(() => new FraudReportDirectory(nodes[25].Dht).ReadAsync(Model, nodes[4].Peer.Id)));
    }

    [Fact]
    public void AForgedReportAChunkUnderTheWrongKeyAndATamperedChunkAreAllRefusedOrFlagged()
    {
        var sim = Small();
        var nodes = sim.AllNodes;
        using var reporter = Ed25519KeyPair.FromSeed(sim.IdentitySeeds[nodes[1].Peer.Id]);
        var accused = nodes[3].Peer.Id;
        var target = nodes[7].Dht;
        var attacker = nodes[9].Peer;
        var now = sim.Scheduler.GetUtcNow();
        var evidence = Evidence(1000, 3);
        var report = new FraudReport
        {
            Reporter = reporter.PeerId, Accused = accused, ModelId = Model, EvidenceHash = System.Security.Cryptography.SHA256.HashData(evidence),
            EvidenceLength = evidence.Length, Chunks = [System.Security.Cryptography.SHA256.HashData(evidence)], IssuedAt = now, ExpiresAt = now.AddHours(1),
        };
        var key = FraudRecordValidator.KeyFor(Model, accused);
        // A reporter signature that does not cover the body, a report filed under another accused's key, one that lives too long.
        var forged = FraudRecordValidator.Sign(report, reporter);
        forged[^3] ^= 1;
        var misfiled = FraudRecordValidator.Sign(report with { Accused = nodes[4].Peer.Id }, reporter);
        var tooLong = FraudRecordValidator.Sign(report with { ExpiresAt = now.AddDays(30) }, reporter);
        foreach (var entry in new[] { forged, misfiled, tooLong })
            Assert.Throws<DhtException>(() => target.HandleRequest(attacker, true, Put(key, FraudRecordValidator.EncodeValue([entry]))));
        // A chunk stored under a key that is not its hash.
        Assert.Throws<DhtException>(() => target.HandleRequest(attacker, true, Put(BlobRecordValidator.KeyFor(evidence), [.. evidence, 0])));
        Assert.Null(target.Records.Get(key));

        // Published honestly, then every holder of the chunk serves a tampered copy: the reader gets the report without evidence.
        sim.Scheduler.Run(() => new FraudReportDirectory(nodes[1].Dht, reporter).PublishAsync(Model, accused, evidence));
        var chunkKey = BlobRecordValidator.KeyFor(evidence);
        foreach (var holder in nodes.Where(n => n.Dht.Records.Get(chunkKey) is not null))
            holder.Tamper = m => m.Record is { } r && r.Key.AsSpan().SequenceEqual(chunkKey) ? m with { Record = r with { Value = [.. r.Value.Select(b => (byte)~b)] } } : m;
        var reader = nodes.First(n => n.Dht.Records.Get(chunkKey) is null && n != nodes[1]);
        var read = Assert.Single(sim.Scheduler.Run(() => new FraudReportDirectory(reader.Dht).ReadAsync(Model, accused)));
        Assert.Equal(reporter.PeerId, read.Report.Reporter);
        Assert.Null(read.Evidence);
    }

    private static KadMessage Put(byte[] key, byte[] value) =>
        new() { Type = KadMessageType.PutValue, Key = key, Record = new KadRecord(key, value) };
}
