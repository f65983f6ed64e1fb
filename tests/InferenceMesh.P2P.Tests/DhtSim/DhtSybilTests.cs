using System.Net;
using InferenceMesh.P2P.Dht;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>
/// Sybil pressure on the simulated DHT: many identities from one /24 join a DHT of honest nodes. The routing
/// tables' per-subnet caps hold (at most <see cref="RoutingTableOptions.MaxPerIpGroupPerTable"/> of the flood in
/// any honest table) and honest nodes still find each other.
/// </summary>
public class DhtSybilTests(ITestOutputHelper output)
{
    private const string SybilSubnet = "/ip4/10.66.6.";

    [Fact]
    public void SixHundredIdentitiesFromOneSubnetStayUnderTheTableCapAndHonestLookupsSucceed()
    {
        var sim = new DhtSimulation(new SimOptions { Nodes = 150, Seed = 7 });
        sim.Build();
        var honest = sim.AllNodes.ToList();
        for (var i = 0; i < 600; i++)
            sim.AddAndJoin(ip: IPAddress.Parse($"10.66.6.{1 + i % 250}"));

        var sybilsPerTable = honest.Select(n => n.Dht.RoutingTable.All().Count(e => e.Addresses.Any(a => a.ToString().StartsWith(SybilSubnet, StringComparison.Ordinal)))).ToList();
        var sizes = honest.Select(n => n.Dht.RoutingTable.Count).ToList();
        output.WriteLine($"honest tables: mean {sizes.Average():F1} entries, Sybil entries mean {sybilsPerTable.Average():F2}, max {sybilsPerTable.Max()} " +
                         $"({100.0 * sybilsPerTable.Sum() / sizes.Sum():F1}% of all entries; the flood is {100.0 * 600 / 750:F0}% of identities)");
        Assert.All(sybilsPerTable, n => Assert.InRange(n, 0, new RoutingTableOptions().MaxPerIpGroupPerTable));

        var random = new Random(3);
        var found = 0;
        const int lookups = 200;
        for (var i = 0; i < lookups; i++)
        {
            var from = honest[random.Next(honest.Count)];
            var to = honest[random.Next(honest.Count)];
            if (to == from) to = honest[(honest.IndexOf(from) + 1) % honest.Count];
            var result = sim.Scheduler.Run(() => from.Dht.FindPeerAsync(to.Peer.Id));
            sim.Scheduler.Drain();
            if (result.Peer is not null) found++;
        }
        output.WriteLine($"honest find-peer lookups during the flood: {found}/{lookups}");
        Assert.True(found >= lookups * 0.97, $"only {found} of {lookups} honest lookups succeeded");
    }
}
