using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// Circuit Relay v2 and DCUtR across real NATs (a <see cref="NatTopology"/>): a relay on the public network, private
/// <c>inferencemesh node</c> processes in home B (endpoint-independent NAT) and home C (symmetric NAT), and
/// <c>inferencemesh ping --listen</c> from home D through each one's <c>/p2p-circuit</c> address. Needs root and the tools
/// <see cref="PortMappingTests"/> names.
/// </summary>
public sealed class HolePunchingTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");

    [SkippableFact]
    public async Task HomeBIsReachedThroughTheRelayThenDirectlyAfterDcutrWhileSymmetricHomeCStaysRelayed()
    {
        PortMappingTests.SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        var relay = net.StartCollected(net.Public, "dotnet", Cli, "node", "--listen", $"/ip4/{NatTopology.PublicAddress}/tcp/4001", "--relay",
            "--port-map", "off", "--autonat-interval", "off");
        var relayAddress = $"/ip4/{NatTopology.PublicAddress}/tcp/4001/p2p/{(await relay.WaitForEventAsync("ready")).GetProperty("peerId").GetString()}";
        NamespaceProcess Private(NatHome home) => net.StartCollected(home.Host, "dotnet", Cli, "node", "--listen", "/ip4/0.0.0.0/tcp/4001",
            "--private", "--relay-via", relayAddress, "--bootstrap", relayAddress, "--port-map", "off", "--autonat-interval", "off");
        var b = Private(net.HomeB);
        var c = Private(net.HomeC);
        var circuitB = (await b.WaitForEventAsync("ready")).GetProperty("circuit")[0].GetString()!;
        var circuitC = (await c.WaitForEventAsync("ready")).GetProperty("circuit")[0].GetString()!;
        Assert.StartsWith(relayAddress + "/p2p-circuit/p2p/", circuitB);

        // Both pings from home D at once, 24 pings 250 ms apart (6 s): each listens so the far side can punch to it.
        var toB = PingAsync(net, circuitB, 4001);
        var toC = PingAsync(net, circuitC, 4002);
        var (pathsB, pathsC) = (await toB, await toC);

        Assert.Equal(24, pathsB.Count);
        Assert.Equal("relayed", pathsB[0]);
        var firstDirect = pathsB.IndexOf("direct");
        Assert.True(firstDirect > 0, $"home B was never reached directly: {string.Join(", ", pathsB)}; B: {b.Errors}");
        Assert.All(pathsB.Skip(firstDirect), p => Assert.Equal("direct", p));
        Assert.Contains("dcutr: direct connection to", b.Errors);

        // Home C's router gives each connection a new random port: the punch is tried, and every ping still goes through the relay.
        Assert.Equal(24, pathsC.Count);
        Assert.All(pathsC, p => Assert.Equal("relayed", p));
        Assert.Contains("dcutr: hole punching", c.Errors);
        Assert.DoesNotContain("dcutr: direct connection to", c.Errors);

        foreach (var node in new[] { b, c, relay })
            Assert.Equal(0, await node.StopAsync());
    }

    [SkippableFact]
    public async Task AListeningClientInHomeDRunsItsHopToHomeBsServerDirectAfterDcutrWhereANonListeningOneStaysRelayed()
    {
        PortMappingTests.SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        var relay = net.StartCollected(net.Public, "dotnet", Cli, "node", "--listen", $"/ip4/{NatTopology.PublicAddress}/tcp/4001", "--relay",
            "--port-map", "off", "--autonat-interval", "off");
        var relayAddress = $"/ip4/{NatTopology.PublicAddress}/tcp/4001/p2p/{(await relay.WaitForEventAsync("ready")).GetProperty("peerId").GetString()}";
        var server = net.StartCollected(net.HomeB.Host, "dotnet", Cli, "node", "--listen", "/ip4/0.0.0.0/tcp/4001", "--bootstrap", relayAddress,
            "--model", NatMeshTests.Split.Value, "--blocks", "0:5", "--private", "--relay-via", relayAddress, "--port-map", "off", "--autonat-interval", "off");
        var serverId = (await server.WaitForEventAsync("ready", seconds: 60)).GetProperty("peerId").GetString();

        async Task<JsonElement> PromptAsync(params string[] extra)
        {
            var (code, stdout, stderr) = await net.ExecAsync(net.HomeD.Host, "dotnet", [Cli, "prompt", "", "--bootstrap", relayAddress,
                "--model", NatMeshTests.Split.Value, "--steps", "256", "--json", .. extra]);
            Assert.True(code == 0, $"prompt failed ({code}): {stdout} {stderr}\nserver: {server.Errors}");
            var result = JsonDocument.Parse(stdout).RootElement;
            Assert.Equal(TestModels.Stories260KReferenceText, result.GetProperty("text").GetString());
            var hop = Assert.Single(result.GetProperty("route").EnumerateArray());
            Assert.Equal(serverId, hop.GetProperty("peerId").GetString());
            return hop;
        }

        // Without --listen nothing can punch to the client: its stream to home B goes through the relay.
        Assert.Equal("relayed", (await PromptAsync()).GetProperty("connection").GetString());
        // Listening, it is punched by the server as soon as it reaches it through the relay, and its stream runs direct.
        Assert.Equal("direct", (await PromptAsync("--listen", "/ip4/0.0.0.0/tcp/4001")).GetProperty("connection").GetString());
        Assert.Contains("dcutr: direct connection to", server.Errors);

        foreach (var node in new[] { server, relay })
            Assert.Equal(0, await node.StopAsync());
    }

    /// <summary>Pings <paramref name="circuit"/> from home D listening on <paramref name="port"/>; returns each ping's path.</summary>
    private static async Task<List<string>> PingAsync(NatTopology net, string circuit, int port)
    {
        var clock = Stopwatch.StartNew();
        var (code, output, error) = await net.ExecAsync(net.HomeD.Host, "dotnet", Cli, "ping", circuit, "--count", "24", "--interval", "250ms",
            "--listen", $"/ip4/0.0.0.0/tcp/{port}");
        Assert.True(code == 0, $"ping {circuit} failed ({code}) after {clock.Elapsed.TotalSeconds:F1} s: {output} {error}");
        return output.Split('\n').Where(l => l.StartsWith("Pong received")).Select(l => l[(l.LastIndexOf('(') + 1)..l.LastIndexOf(')')]).ToList();
    }
}
