using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>End to end through node processes on loopback: libp2p, Noise, Yamux, the DHT and the stage protocol.</summary>
public sealed class SwarmTests
{
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
                var result = await swarm.RunAsync("prompt", prompt, "--route", route);
                Assert.True(result.Code == 0, result.Error);
                Assert.Equal(TestModels.Stories260KReferenceText + "\n", result.Out);
            }
        var status = await swarm.RunAsync("swarm", "status", "--json");
        Assert.Contains("\"running\"", status.Out);
    }

    [Theory]
    [InlineData(RouteMode.Chained, "", 1)]
    [InlineData(RouteMode.Relayed, "Once upon a time", 2)]
    public async Task NodeKilledMidGenerationIsReplaced(RouteMode mode, string prompt, int seed)
    {
        // Four nodes over five blocks: [0,2), [2,4), [3,5) and a spare [0,2). The one on the route is SIGKILLed.
        await using var swarm = await LocalSwarmHandle.StartAsync(4);
        var (peer, client) = await swarm.ClientAsync(mode);
        await using (peer)
        await using (client)
        {
            await using var session = await client.OpenSessionAsync(256);
            var victim = session.Route.First(h => h.Blocks.Start == 0).Server.PeerId;
            var killAt = new Random(seed).Next(10, 200);
            var pieces = new List<string>();
            await foreach (var piece in new TextGenerator(client.Tokenizer, 512).GenerateAsync(prompt, new GenerationOptions(256, 0f), session.StepAsync))
            {
                pieces.Add(piece);
                if (pieces.Count == killAt) Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", victim)).Code);
            }
            Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(pieces));
            Assert.True(session.Recoveries >= 1, "the killed node was on the route, so the session must have replaced it");
            Assert.DoesNotContain(session.Route, h => h.Server.PeerId == victim);
        }
    }

    [Fact]
    public async Task WithNoSpareTheErrorNamesTheUncoveredBlocks()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(2);
        Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", "node-2")).Code);
        var result = await swarm.RunAsync("prompt", "Once upon a time");
        Assert.Equal(2, result.Code);
        Assert.Contains("blocks 3, 4", result.Error);
    }

    [Fact]
    public async Task SixteenConcurrentSessionsThroughThreeNodes()
    {
        await using var swarm = await LocalSwarmHandle.StartAsync(3);
        var results = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => swarm.RunAsync("prompt", i % 2 == 0 ? "" : "Once upon a time", "--route", i % 3 == 0 ? "relayed" : "chained")));
        Assert.All(results, r => Assert.Equal(TestModels.Stories260KReferenceText + "\n", r.Out));
    }
}
