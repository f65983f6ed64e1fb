using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>End to end through node processes on loopback: libp2p, Noise, Yamux, the DHT and the stage protocol.</summary>
public sealed class SwarmTests
{
    /// <summary>The reference text's settings: greedy, 256 positions.</summary>
    private static readonly GenerationOptions Reference = new(Temperature: 0f, MaxPositions: 256);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(5)]
    public async Task PromptThroughTheSwarmPrintsTheReferenceText(int nodes)
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(nodes);
        Assert.Equal(nodes, swarm.Swarm.Nodes.Count);
        foreach (var route in new[] { "chained", "relayed" })
            foreach (var prompt in new[] { "", "Once upon a time" })
            {
                var result = await swarm.RunAsync("prompt", prompt, "--route", route, "--steps", "256");
                Assert.True(result.Code == 0, result.Error);
                Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
            }
        var kept = await swarm.RunAsync("prompt", "Once upon a time", "--servers-keep-outputs", "--verify", "off", "--steps", "256");
        Assert.True(kept.Code == 0, kept.Error);
        Assert.Equal(TestModels.Stories260KReferenceText + "\n", kept.Out);
        var refused = await swarm.RunAsync("prompt", "Once upon a time", "--servers-keep-outputs");
        Assert.Equal(2, refused.Code);
        Assert.Contains("only with verification off", refused.Error);
        var status = await swarm.RunAsync("swarm", "status", "--json");
        Assert.Contains("\"running\"", status.Out);
    }

    [Fact]
    public async Task DefaultSwarmGivesEveryBlockTwoServersAndStatusCountsThem()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        var status = await swarm.RunAsync("swarm", "status", "--json");
        Assert.True(status.Code == 0, status.Error);
        var blocks = JsonDocument.Parse(status.Out).RootElement.GetProperty("blocks").EnumerateArray().ToList();
        Assert.Equal(swarm.Swarm.BlockCount, blocks.Count);
        Assert.All(blocks, b => Assert.True(b.GetProperty("runningServers").GetInt32() >= 2, $"block {b.GetProperty("block")} has fewer than 2 servers"));

        Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", "node-1")).Code);
        var table = await swarm.RunAsync("swarm", "status");
        Assert.Contains("running servers per block:", table.Out);
        Assert.Contains("fewer than 2", table.Out);
    }

    [Fact]
    public async Task ReplicasNeedEnoughNodes()
    {
        var state = TestModels.NewTempDirectory("replicas");
        var result = await LocalSwarmHandle.RunCliAsync(["swarm", "up", "--model", TestModels.Stories260K, "--nodes", "1", "--replicas", "2", "--state", state]);
        Assert.Equal(2, result.Code);
        Assert.Contains("--replicas 2 needs at least 2 nodes", result.Error);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DefaultSwarmSurvivesAnyNodeKilledMidGenerationIn20SeededTrials(bool serversKeepOutputs)
    {
        // The default swarm (3 nodes, 2 servers per block). Trial t SIGKILLs node (t mod 3) + 1 at a seeded
        // point of the generation, checks the text, then restarts it. Servers that keep their outputs do so on chained
        // routes only: a recovery then fetches the failed server's inputs from the one before it.
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        for (var trial = 0; trial < 20; trial++)
        {
            var random = new Random(trial);
            var mode = trial % 2 == 0 || serversKeepOutputs ? RouteMode.Chained : RouteMode.Relayed;
            var prompt = trial % 4 < 2 ? "" : "Once upon a time";
            var victim = swarm.Swarm.Nodes[trial % swarm.Swarm.Nodes.Count];
            var log = new List<string>();
            await using (var client = await swarm.ClientAsync(mode, line => { lock (log) log.Add(line); }, serversKeepOutputs))
            {
                var killAt = random.Next(1, 250);
                var pieces = new List<string>();
                var onRoute = false;
                await using var session = await client.OpenSessionAsync(256);
                try
                {
                    await foreach (var piece in new TextGenerator(client.Tokenizer, 512).GenerateAsync(prompt, Reference, session.StepAsync))
                    {
                        pieces.Add(piece);
                        if (pieces.Count != killAt) continue;
                        onRoute = session.Route.Any(h => h.PeerId == victim.PeerId);
                        Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", victim.Name)).Code);
                    }
                }
                catch (Core.MeshException e)
                {
                    var nodeLogs = swarm.Swarm.Nodes.Select(n => $"{n.Name} {n.PeerId}: {string.Join(" | ", File.ReadLines(n.LogFile).TakeLast(6))}");
                    Assert.Fail($"trial {trial} ({mode}, {victim.Name} killed at piece {killAt}): {e.Message}; client log: {string.Join(" | ", log)}; {string.Join("; ", nodeLogs)}");
                }
                Assert.True(TestModels.Stories260KReferenceText == string.Concat(pieces), $"trial {trial} ({mode}, {victim.Name} killed at piece {killAt}) printed another text");
                if (onRoute) Assert.True(session.Recoveries >= 1, $"trial {trial}: {victim.Name} was on the route, so the session must have replaced it");
                Assert.DoesNotContain(session.Route, h => h.PeerId == victim.PeerId);
            }
            Assert.Equal(0, (await swarm.RunAsync("swarm", "restart", victim.Name)).Code);
        }
    }

    [Fact]
    public async Task WithNoSpareTheErrorNamesTheUncoveredBlocksAndExitsMeshUnavailable()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2, replicas: 1);
        Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", "node-2")).Code);
        var result = await swarm.RunAsync("prompt", "Once upon a time");
        Assert.Equal(3, result.Code);
        Assert.Contains("blocks 2, 3, 4", result.Error);
    }

    [Fact]
    public async Task DeadBootstrapIsNamedNotReportedAsMissingServers()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(1);
        Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", "bootstrap")).Code);
        var result = await swarm.RunAsync("prompt", "Once upon a time");
        Assert.Equal(3, result.Code);
        Assert.Contains("no bootstrap peer answered", result.Error);
        Assert.Contains(swarm.Swarm.Bootstrap.PeerId, result.Error);
    }

    [Fact]
    public async Task PromptJsonReportsTheRouteWithLatenciesAndTokensPerSecond()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2, replicas: 1);
        var result = await swarm.RunAsync("prompt", "Once upon a time", "--json", "--steps", "256");
        Assert.True(result.Code == 0, result.Error);
        var json = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal(TestModels.Stories260KReferenceText, json.GetProperty("text").GetString());
        Assert.Equal("chained", json.GetProperty("mode").GetString());
        Assert.True(json.GetProperty("tokensPerSecond").GetDouble() > 0);
        Assert.Equal(0, json.GetProperty("recoveries").GetInt32());
        var route = json.GetProperty("route").EnumerateArray().ToList();
        Assert.Equal(["0:2", "2:5"], route.Select(h => h.GetProperty("blocks").GetString()));
        Assert.Equal(swarm.Swarm.Nodes.Select(n => n.PeerId), route.Select(h => h.GetProperty("peerId").GetString()));
        Assert.All(route, h => Assert.True(h.GetProperty("meanLatencyMs").GetDouble() > 0));
    }

    [Fact]
    public async Task SixteenConcurrentSessionsThroughThreeNodes()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => swarm.RunAsync("prompt", i % 2 == 0 ? "" : "Once upon a time", "--steps", "256", "--route", i % 3 == 0 ? "relayed" : "chained")));
        Assert.All(results, r => Assert.Equal(TestModels.Stories260KReferenceText + "\n", r.Out));
    }
}
