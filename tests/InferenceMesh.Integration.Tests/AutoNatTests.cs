using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// AutoNAT v1 between <c>inferencemesh node</c> processes in a <see cref="NatTopology"/>: a node on the public network, one in each of
/// homes A (miniupnpd), B (endpoint-independent NAT) and C (symmetric NAT), all joined through the public node. Needs root and the tools
/// <see cref="PortMappingTests"/> names.
/// </summary>
public sealed class AutoNatTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");

    [SkippableFact]
    public async Task PublicNodeAndMappedHomeAArePublicAndHomesBAndCArePrivate()
    {
        PortMappingTests.SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        string[] Common(string listen) => ["node", "--listen", listen, "--autonat-interval", "2s", "--autonat-confirmations", "1"];
        var pub = net.StartCollected(net.Public, "dotnet", [Cli, .. Common($"/ip4/{NatTopology.PublicAddress}/tcp/4001")]);
        var ready = await pub.WaitForEventAsync("ready");
        var bootstrap = $"/ip4/{NatTopology.PublicAddress}/tcp/4001/p2p/{ready.GetProperty("peerId").GetString()}";
        var homes = new[] { net.HomeA, net.HomeB, net.HomeC }.Select(h =>
            net.StartCollected(h.Host, "dotnet", [Cli, .. Common("/ip4/0.0.0.0/tcp/4001"), "--bootstrap", bootstrap, "--port-map", h == net.HomeA ? "upnp" : "off"])).ToList();

        await homes[0].WaitForEventAsync("address", e => e.GetProperty("kind").GetString() == "mapped");
        await homes[0].WaitForEventAsync("reachability", e => e.GetProperty("reachability").GetString() == "public");
        await homes[1].WaitForEventAsync("reachability", e => e.GetProperty("reachability").GetString() == "private");
        await homes[2].WaitForEventAsync("reachability", e => e.GetProperty("reachability").GetString() == "private");
        await pub.WaitForEventAsync("reachability", e => e.GetProperty("reachability").GetString() == "public");

        // Each home learns from the public node's Identify where it is seen: behind its router's WAN address.
        foreach (var (node, home) in homes.Zip(new[] { net.HomeA, net.HomeB, net.HomeC }))
        {
            var observed = await node.WaitForEventAsync("address", e => e.GetProperty("kind").GetString() == "observed");
            Assert.StartsWith($"/ip4/{home.WanAddress}/tcp/", observed.GetProperty("address").GetString());
        }
        foreach (var node in homes.Append(pub))
        {
            var code = await node.StopAsync();
            Assert.True(code == 0, $"exit code {code}: {node.Errors}");
        }
    }
}
