using System.Diagnostics;
using System.Text.Json;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// DCUtR hole punching between our node and js-libp2p (<c>@libp2p/dcutr</c>, tests/interop/dcutr-peer.mjs) across real NATs
/// (a <see cref="NatTopology"/>): our relay on the public network, the js peer behind home B's endpoint-independent NAT
/// (reserved on the relay), our hosts behind home D's. js-libp2p only punches to public addresses, which is why the js peer
/// runs inside the namespaces. Both ways round: our <c>ping --listen</c> dials the js peer's circuit address and js (the
/// peer that accepted the relayed connection) starts the upgrade; the js peer dials our private node's circuit address and
/// our node starts it. Needs root, the tools <see cref="PortMappingTests"/> names, Node.js and <c>npm ci --prefix tests/interop</c>.
/// </summary>
public sealed class HolePunchingInteropTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
    private const int Pings = 16;

    [SkippableFact]
    public async Task OurNodeAndAJsPeerInAnotherHomeGoDirectAfterDcutrWhicheverSideStartsTheUpgrade()
    {
        PortMappingTests.SkipUnlessNamespaces();
        var script = Path.Combine(TestModels.RepositoryRoot, "tests", "interop", "dcutr-peer.mjs");
        Assert.True(Directory.Exists(Path.Combine(TestModels.RepositoryRoot, "tests", "interop", "node_modules", "@libp2p", "dcutr")),
            "js-libp2p is not installed: run `npm ci --prefix tests/interop` (needs Node >= 20) before this interop test");
        await using var net = await NatTopology.CreateAsync();
        var relay = net.StartCollected(net.Public, "dotnet", Cli, "node", "--listen", $"/ip4/{NatTopology.PublicAddress}/tcp/4001", "--relay",
            "--port-map", "off", "--autonat-interval", "off");
        var relayAddress = $"/ip4/{NatTopology.PublicAddress}/tcp/4001/p2p/{(await relay.WaitForEventAsync("ready")).GetProperty("peerId").GetString()}";

        // Our private node in home D, for the js peer to dial through the relay (our node starts the upgrade).
        var ours = net.StartCollected(net.HomeD.Host, "dotnet", Cli, "node", "--listen", "/ip4/0.0.0.0/tcp/4001", "--private",
            "--relay-via", relayAddress, "--port-map", "off", "--autonat-interval", "off");
        var oursReady = await ours.WaitForEventAsync("ready");
        var oursCircuit = oursReady.GetProperty("circuit")[0].GetString()!;

        // DEBUG: js-libp2p's DCUtR log (stderr) says, on failure, how far each upgrade got.
        var js = net.StartCollected(net.HomeB.Host, "env", "DEBUG=libp2p:dcutr*", "node", script, JsonSerializer.Serialize(new
        {
            relay = relayAddress, localPort = 4001, target = oursCircuit, count = Pings, intervalMs = 250,
        }));
        var reserved = await js.WaitForEventAsync("reserved");
        // Home B's router keeps the port: the relay saw the js peer at the port every one of its dials leaves from.
        Assert.Contains($"/ip4/{net.HomeB.WanAddress}/tcp/4001/p2p/{reserved.GetProperty("peerId").GetString()}",
            reserved.GetProperty("announced").EnumerateArray().Select(a => a.GetString()));
        var jsCircuit = reserved.GetProperty("addrs")[0].GetString()!;
        Assert.StartsWith(relayAddress + "/p2p-circuit/p2p/", jsCircuit);

        // Meanwhile our ping from home D (listening on 4002) dials the js peer through the relay: js starts that upgrade.
        var clock = Stopwatch.StartNew();
        var (code, output, error) = await net.ExecAsync(net.HomeD.Host, "dotnet", Cli, "ping", jsCircuit, "--count", Pings.ToString(),
            "--interval", "250ms", "--listen", "/ip4/0.0.0.0/tcp/4002");
        Assert.True(code == 0, $"ping {jsCircuit} failed ({code}) after {clock.Elapsed.TotalSeconds:F1} s: {output} {error}\njs: {js.Errors}");
        var ourPaths = output.Split('\n').Where(l => l.StartsWith("Pong received")).Select(l => l[(l.LastIndexOf('(') + 1)..l.LastIndexOf(')')]).ToList();
        Assert.Equal(Pings, ourPaths.Count);
        Assert.Equal("relayed", ourPaths[0]);
        var firstDirect = ourPaths.IndexOf("direct");
        Assert.True(firstDirect > 0, $"the js peer was never reached directly (js started the upgrade): {string.Join(", ", ourPaths)}; {error}\njs: {js.Errors}");
        Assert.All(ourPaths.Skip(firstDirect), p => Assert.Equal("direct", p));

        // The js peer's pings to our node: relayed first, direct (to home D's router, not the relay) once our node's punch worked.
        await js.WaitForEventAsync("done", seconds: 30);
        var jsPings = js.Events.Where(e => e.GetProperty("event").GetString() == "pinged").ToList();
        Assert.Equal(Pings, jsPings.Count);
        Assert.Equal("relayed", jsPings[0].GetProperty("path").GetString());
        var jsFirstDirect = jsPings.FindIndex(e => e.GetProperty("path").GetString() == "direct");
        Assert.True(jsFirstDirect > 0, $"our node was never reached directly (our node started the upgrade): {string.Join(", ", jsPings)}; ours: {ours.Errors}\njs: {js.Errors}");
        Assert.All(jsPings.Skip(jsFirstDirect), e => Assert.StartsWith($"/ip4/{net.HomeD.WanAddress}/tcp/4001", e.GetProperty("remoteAddr").GetString()));
        Assert.Contains("dcutr: direct connection to", ours.Errors);

        foreach (var process in new[] { js, ours, relay })
            Assert.Equal(0, await process.StopAsync());
    }
}
