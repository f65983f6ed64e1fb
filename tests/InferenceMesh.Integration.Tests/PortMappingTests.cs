using System.Text.Json;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// <c>inferencemesh node</c> in home A of a <see cref="NatTopology"/> (network namespaces, a real miniupnpd) maps its port, is dialled
/// through the mapping from the public network and from another home, renews its lease, maps again after the router forgets, and
/// leaves no mapping behind after a clean exit. Needs root, iproute2, nftables and miniupnpd-nftables (<c>.ci/run</c> installs them);
/// elsewhere each test says why it cannot run (and fails under <c>INFERENCEMESH_REQUIRE_NETNS=1</c>, as in CI).
/// </summary>
public sealed class PortMappingTests
{
    private const int Port = 4001;
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");

    internal static void SkipUnlessNamespaces()
    {
        if (NatTopology.Unavailable() is not { } why) return;
        var message = $"NAT namespace test cannot run: {why}";
        Console.WriteLine(message);
        if (Environment.GetEnvironmentVariable("INFERENCEMESH_REQUIRE_NETNS") == "1") Assert.Fail(message + " (INFERENCEMESH_REQUIRE_NETNS=1)");
        Skip.If(true, message);
    }

    [SkippableFact]
    public async Task HomeNodeMapsByUpnpIsDialledFromOutsideRenewsRemapsAfterARouterRebootAndUnmapsOnExit()
    {
        SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        var node = StartHomeNode(net, "upnp");
        var ready = await node.WaitForEventAsync("ready");
        var mapped = await node.WaitForEventAsync("address", e => e.GetProperty("kind").GetString() == "mapped");
        var address = mapped.GetProperty("address").GetString()!;
        Assert.Equal($"/ip4/{net.HomeA.WanAddress}/tcp/{Port}/p2p/{ready.GetProperty("peerId").GetString()}", address);
        Assert.Equal("Upnp", mapped.GetProperty("source").GetString());
        var lease = Assert.Single(net.Leases());
        Assert.Equal((Port, net.HomeA.HostAddress, Port), (lease.ExternalPort, lease.InternalAddress, lease.InternalPort));

        await PingAsync(net, net.Public, address);
        await PingAsync(net, net.HomeB.Host, address);

        // Renewal: miniupnpd's lease expiry moves forward (6 s leases renewed every 2 s).
        await Poll.UntilAsync(() => net.Leases() is [var renewed] && renewed.Expiry > lease.Expiry, "the lease to be renewed", 10, 100);

        // The router forgets (a reboot): the next renewal maps the port again and it is reachable again.
        await net.RebootMiniupnpdAsync();
        Assert.Empty(net.Leases());
        await Poll.UntilAsync(() => net.Leases().Any(l => l.ExternalPort == Port), "the port to be mapped again after the router forgot it", 10, 100);
        await PingAsync(net, net.Public, address);

        Assert.Equal(0, await node.StopAsync());
        Assert.Empty(net.Leases());
        var (_, rules, _) = await net.ExecAsync(net.HomeA.Router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd");
        Assert.DoesNotContain($"dport {Port}", rules);
        Assert.Contains("port mapping deleted", node.Errors);
    }

    [SkippableTheory]
    [InlineData("natpmp", "NatPmp")]
    [InlineData("pcp", "Pcp")]
    public async Task HomeNodeMapsByNatPmpOrPcpWithUpnpOffAndUnmapsOnExit(string protocol, string source)
    {
        SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync(new NatTopologyOptions { Upnp = false });
        var node = StartHomeNode(net, protocol);
        var mapped = await node.WaitForEventAsync("address", e => e.GetProperty("kind").GetString() == "mapped");
        Assert.Equal(source, mapped.GetProperty("source").GetString());
        var address = mapped.GetProperty("address").GetString()!;
        Assert.StartsWith($"/ip4/{net.HomeA.WanAddress}/tcp/{Port}/", address);
        Assert.Contains(net.Leases(), l => l.ExternalPort == Port && l.InternalAddress == net.HomeA.HostAddress);
        await PingAsync(net, net.Public, address);
        Assert.Equal(0, await node.StopAsync());
        Assert.DoesNotContain(net.Leases(), l => l.ExternalPort == Port);
    }

    [SkippableFact]
    public async Task HomeBehindARouterWithoutPortMappingPrintsNoMappedAddressAndStaysUnreachable()
    {
        SkipUnlessNamespaces();
        await using var net = await NatTopology.CreateAsync();
        var node = net.StartCollected(net.HomeB.Host, "dotnet", Cli, "node", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--port-map", "auto",
            "--port-map-lifetime", "6s", "--port-map-renew", "2s");
        var ready = await node.WaitForEventAsync("ready");
        await Poll.UntilAsync(() => Task.FromResult(node.Errors.Contains("port mapping by Upnp failed") && node.Errors.Contains("port mapping by NatPmp failed")
            && node.Errors.Contains("port mapping by Pcp failed")), "every protocol to fail", 20, 50, () => node.Errors);
        Assert.DoesNotContain(node.Events, e => e.GetProperty("event").GetString() == "address" && e.GetProperty("kind").GetString() == "mapped");
        var (code, _, _) = await net.ExecAsync(net.Public, "dotnet", Cli, "ping", $"/ip4/{net.HomeB.WanAddress}/tcp/{Port}/p2p/{ready.GetProperty("peerId").GetString()}");
        Assert.NotEqual(0, code);
        Assert.Equal(0, await node.StopAsync());
    }

    private static NamespaceProcess StartHomeNode(NatTopology net, string protocols) =>
        net.StartCollected(net.HomeA.Host, "dotnet", Cli, "node", "--listen", $"/ip4/0.0.0.0/tcp/{Port}", "--port-map", protocols,
            "--port-map-lifetime", "6s", "--port-map-renew", "2s");

    private static async Task PingAsync(NatTopology net, string ns, string address)
    {
        var (code, output, error) = await net.ExecAsync(ns, "dotnet", Cli, "ping", address, "--count", "1");
        Assert.True(code == 0, $"ping {address} from {ns} failed ({code}): {output} {error}");
        Assert.Contains("Pong received", output);
    }
}
