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

    [Fact]
    public async Task NodeSigkilledMidGenerationIsReplacedIn20SeededTrials()
    {
        // Four nodes over five blocks: [0,2), [2,4), [3,5) and a spare [0,2). Each trial SIGKILLs the server of
        // block 0 on the session's route at a seeded step, checks the text, then restarts the killed node.
        await using var swarm = await LocalSwarmHandle.StartAsync(4);
        for (var trial = 0; trial < 20; trial++)
        {
            var random = new Random(trial);
            var mode = trial % 2 == 0 ? RouteMode.Chained : RouteMode.Relayed;
            var prompt = trial % 4 < 2 ? "" : "Once upon a time";
            string victim;
            await using (var connection = await swarm.ClientAsync(mode))
            {
                var client = connection.Client;
                await using var session = await client.OpenSessionAsync(256);
                victim = session.Route.First(h => h.Blocks.Start == 0).Server.PeerId;
                var killAt = random.Next(1, 250);
                var pieces = new List<string>();
                await foreach (var piece in new TextGenerator(client.Tokenizer, 512).GenerateAsync(prompt, new GenerationOptions(256, 0f), session.StepAsync))
                {
                    pieces.Add(piece);
                    if (pieces.Count == killAt) Assert.Equal(0, (await swarm.RunAsync("swarm", "kill", victim)).Code);
                }
                Assert.True(TestModels.Stories260KReferenceText == string.Concat(pieces), $"trial {trial} ({mode}, kill at piece {killAt}) printed another text");
                Assert.True(session.Recoveries >= 1, $"trial {trial}: the killed node was on the route, so the session must have replaced it");
                Assert.DoesNotContain(session.Route, h => h.Server.PeerId == victim);
            }
            Assert.Equal(0, (await swarm.RunAsync("swarm", "restart", victim)).Code);
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
