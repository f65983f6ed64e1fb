using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

public sealed class MeshGenerationTests
{
    /// <summary>The reference text's settings: greedy, 256 positions.</summary>
    private static readonly GenerationOptions Greedy = new(Temperature: 0f, MaxPositions: 256);

    private static async Task<(InMemoryMesh Mesh, MeshClient Client)> Swarm(IEnumerable<(int Start, int End)> spans, MeshClientOptions? options = null, NodeOptions? nodeOptions = null)
    {
        var split = MeshModels.Stories260KPerBlock;
        var mesh = new InMemoryMesh();
        foreach (var (start, end) in spans) mesh.AddNode(split, new BlockRange(start, end), nodeOptions);
        var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh), options);
        await Task.CompletedTask;
        return (mesh, client);
    }

    public static TheoryData<string, RouteMode> Swarms()
    {
        var data = new TheoryData<string, RouteMode>();
        foreach (var spans in new[] { "0:5", "0:2,2:5", "0:2,2:3,3:5", "0:1,1:2,2:3,3:4,4:5" })
            foreach (var mode in new[] { RouteMode.Chained, RouteMode.Relayed })
                data.Add(spans, mode);
        return data;
    }

    private static IEnumerable<(int, int)> Parse(string spans) => BlockRange.ParseContiguousList(spans, 5).Select(r => (r.Start, r.End));

    [Theory]
    [MemberData(nameof(Swarms))]
    public async Task EverySwarmPrintsTheReferenceText(string spans, RouteMode mode)
    {
        var (mesh, client) = await Swarm(Parse(spans), new MeshClientOptions { Mode = mode });
        await using (mesh)
        await using (client)
        {
            foreach (var prompt in new[] { "", "Once upon a time" })
            {
                var text = string.Concat(await client.GenerateAsync(prompt, Greedy).ToListAsync());
                Assert.Equal(TestModels.Stories260KReferenceText, text);
            }
            await Poll.UntilAsync(() => mesh.Nodes.All(n => n.Server.SessionCount == 0), "the servers to process the one-way CloseSession");
            Assert.All(mesh.Nodes, n => Assert.Equal(0, n.Server.SessionCount));
            Assert.All(mesh.Nodes, n => Assert.Equal(0, n.Server.ReservedKvBytes));
        }
    }

    [Fact]
    public async Task DisposingAClientTwiceIsHarmless()
    {
        var (mesh, client) = await Swarm(Parse("0:5"));
        await using (mesh)
        {
            Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(await client.GenerateAsync("", Greedy).ToListAsync()));
            await client.DisposeAsync();
            await client.DisposeAsync();
        }
    }

    [Fact]
    public async Task ChatStreamsOnlyTheReplyAndTheTemplateOverrideIsApplied()
    {
        var (mesh, client) = await Swarm(Parse("0:2,2:5"), new MeshClientOptions { ChatTemplate = Onnx.Tokenizer.ChatTemplateFamily.Mistral });
        await using (mesh)
        await using (client)
        {
            const string prompt = "Once upon a time";
            var turns = new[] { Onnx.Tokenizer.ChatTurn.User(prompt) };
            var options = new GenerationOptions(MaxTokens: 12, Temperature: 0f);
            var reply = string.Concat(await client.GenerateChatAsync(turns, options).ToListAsync());
            var completed = await client.CompleteChatAsync(turns, options);
            Assert.Equal(reply, completed.Completion);
            var whole = string.Concat(await client.GenerateAsync("[INST] " + prompt + " [/INST]", options).ToListAsync());
            Assert.Equal("[INST] " + prompt + " [/INST]" + reply, whole);
        }
        var (plainMesh, plainClient) = await Swarm(Parse("0:5"));
        await using (plainMesh)
        await using (plainClient)
        {
            var reply = string.Concat(await plainClient.GenerateChatAsync([Onnx.Tokenizer.ChatTurn.User("Once upon a time")], Greedy).ToListAsync());
            Assert.Equal(TestModels.Stories260KReferenceText["Once upon a time".Length..], reply);
        }
    }

    [Theory]
    [InlineData(RouteMode.Chained)]
    [InlineData(RouteMode.Relayed)]
    public async Task NodeKilledMidGenerationIsReplacedAndTheTextIsUnchanged(RouteMode mode)
    {
        // 10 seeded trials per mode: a random node of the route is killed at a random point; a spare serves every block.
        for (var trial = 0; trial < 10; trial++)
        {
            var random = new Random(trial);
            var (mesh, client) = await Swarm([(0, 2), (2, 5), (0, 5)], new MeshClientOptions { Mode = mode, StepTimeout = TimeSpan.FromSeconds(10) });
            await using (mesh)
            await using (client)
            {
                var session = await client.OpenSessionAsync(256);
                var victim = session.Route[random.Next(session.Route.Count)].PeerId;
                await session.DisposeAsync();
                var killAt = random.Next(1, 200);
                var pieces = new List<string>();
                await foreach (var piece in client.GenerateAsync(trial % 2 == 0 ? "" : "Once upon a time", Greedy))
                {
                    pieces.Add(piece);
                    if (pieces.Count == killAt) mesh.Kill(victim);
                }
                Assert.True(mesh.Nodes.Single(n => n.PeerId == victim).Dead);
                Assert.True(client.Recoveries >= 1, $"trial {trial}: killing {victim} after {killAt} pieces caused no recovery");
                Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(pieces));
            }
        }
    }

    [Fact]
    public async Task WithNoSpareTheErrorNamesTheUncoveredBlocks()
    {
        var (mesh, client) = await Swarm([(0, 2), (2, 5)]);
        await using (mesh)
        await using (client)
        {
            var pieces = 0;
            var error = await Assert.ThrowsAsync<MeshException>(async () =>
            {
                await foreach (var _ in client.GenerateAsync("", Greedy))
                    if (++pieces == 10) mesh.Kill(mesh.Nodes[1].PeerId);
            });
            Assert.Equal(MeshErrorCode.RouteUnavailable, error.Code);
            Assert.Contains("blocks 2, 3, 4", error.Message);
        }
    }

    [Fact]
    public async Task SixteenConcurrentSessionsAllPrintTheirTexts()
    {
        var (mesh, chained) = await Swarm([(0, 2), (2, 3), (3, 5)]);
        await using (mesh)
        await using (chained)
        await using (var relayed = MeshClient.Open(MeshModels.Stories260KPerBlock, mesh.DialerFor("relayed-client"), new MeshDirectory(mesh), new MeshClientOptions { Mode = RouteMode.Relayed }))
        {
            var prompts = Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? "" : "Once upon a time").ToList();
            var texts = await Task.WhenAll(prompts.Select((p, i) => Task.Run(async () =>
                string.Concat(await (i % 3 == 0 ? relayed : chained).GenerateAsync(p, Greedy).ToListAsync()))));
            Assert.All(texts, t => Assert.Equal(TestModels.Stories260KReferenceText, t));
        }
    }

    [Fact]
    public async Task NodesMixingIlgpuAndOnnxRuntimePrintTheReferenceText()
    {
        var split = MeshModels.Stories260KPerBlock;
        await using var mesh = new InMemoryMesh();
        mesh.AddNode(split, new BlockRange(0, 2), executor: ExecutorKind.Ilgpu);
        mesh.AddNode(split, new BlockRange(2, 5), executor: ExecutorKind.Ort);
        await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh));
        Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(await client.GenerateAsync("Once upon a time", Greedy).ToListAsync()));
    }

    [Fact]
    public async Task SeededSamplingThroughTheMeshMatchesOneProcess()
    {
        var (mesh, client) = await Swarm([(0, 3), (3, 5)]);
        await using (mesh)
        await using (client)
        {
            var options = new GenerationOptions(80, 0.9f, 0.9f, 77);
            var meshText = string.Concat(await client.GenerateAsync("Lily", options).ToListAsync());
            using var local = LocalModel.Open(TestModels.Stories260K);
            Assert.Equal(string.Concat(local.Generate("Lily", options)), meshText);
        }
    }
}
