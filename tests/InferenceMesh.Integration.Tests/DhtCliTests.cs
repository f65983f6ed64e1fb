using System.Text.Json;

namespace InferenceMesh.Integration.Tests;

/// <summary>The <c>dht</c> verbs against a real swarm's DHT: each prints one JSON object.</summary>
public sealed class DhtCliTests
{
    [Fact]
    public async Task VerbsPrintJsonResults()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2);
        var bootstrap = swarm.Swarm.Bootstrap.DialAddress;
        async Task<JsonElement> Dht(params string[] args)
        {
            var result = await swarm.RunAsync(["dht", .. args, "--bootstrap", bootstrap]);
            Assert.True(result.Code == 0, result.Error);
            return JsonDocument.Parse(result.Out).RootElement;
        }

        Assert.True((await Dht("put", "/mesh/greeting", "hello mesh")).GetProperty("stored").GetInt32() >= 1);
        var got = await Dht("get", "/mesh/greeting");
        Assert.Equal("hello mesh", got.GetProperty("value").GetString());

        var span = await Dht("get", $"/span/{swarm.Swarm.ModelId}/2");
        var servers = span.GetProperty("servers").EnumerateArray().Select(s => s.GetProperty("peerId").GetString()).ToList();
        Assert.Equal(swarm.Swarm.Nodes.Select(n => n.PeerId).Order(), servers.Order());

        var node = swarm.Swarm.Nodes[0];
        var found = await Dht("find-peer", node.PeerId);
        Assert.True(found.GetProperty("found").GetBoolean());
        Assert.Contains(node.Listen[0], found.GetProperty("peer").GetProperty("addresses").EnumerateArray().Select(a => a.GetString()));

        const string cid = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
        Assert.True((await Dht("provide", cid)).GetProperty("stored").GetInt32() >= 1);
        Assert.NotEmpty((await Dht("find-providers", cid)).GetProperty("providers").EnumerateArray());

        var refused = await swarm.RunAsync("dht", "get", "/unknown/x", "--bootstrap", bootstrap);
        Assert.Equal(2, refused.Code);
        Assert.Contains("no record validator for namespace 'unknown'", refused.Error);
    }

    [Fact]
    public async Task NodePrintsOneReadyLineAndAnnouncesItsBlocks()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(1);
        var node = swarm.Swarm.Nodes[0];
        var firstLine = File.ReadLines(node.LogFile).First(l => l.StartsWith('{'));
        var ready = JsonDocument.Parse(firstLine).RootElement;
        Assert.Equal("ready", ready.GetProperty("event").GetString());
        Assert.Equal(node.PeerId, ready.GetProperty("peerId").GetString());
        Assert.StartsWith("/ip4/127.0.0.1/tcp/", ready.GetProperty("listen")[0].GetString());
        Assert.Equal("0:5", ready.GetProperty("blocks").GetString());
    }

    [Theory]
    [InlineData("TERM")]
    [InlineData("INT")]
    public async Task NodeStopsCleanlyOnSignal(string signal)
    {
        var cli = Path.Combine(AppContext.BaseDirectory, "inferencemesh.dll");
        var start = new System.Diagnostics.ProcessStartInfo("dotnet", [cli, "node"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = System.Diagnostics.Process.Start(start)!;
        try
        {
            var ready = await process.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
            Assert.StartsWith("{\"event\":\"ready\"", ready);
            using (var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", process.Id.ToString()])) await kill!.WaitForExitAsync();
            // A runner started in the background of a shell hands its children SIGINT ignored; this test needs a foreground run.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(timeout.Token);
            Assert.Equal(0, process.ExitCode);
            Assert.Contains("stopping", await process.StandardError.ReadToEndAsync());
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
