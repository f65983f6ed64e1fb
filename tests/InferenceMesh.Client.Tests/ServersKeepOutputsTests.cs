using InferenceMesh.Client;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>
/// <see cref="MeshClientOptions.ServersKeepOutputs"/>: on a chained route the client takes in only the last server's output,
/// and a recovery fetches the inputs it replays from the server before the failed one.
/// </summary>
public sealed class ServersKeepOutputsTests
{
    private static readonly GenerationOptions Greedy = new(Temperature: 0f, MaxPositions: 256);

    /// <summary>stories260K's residual stream: 64 float32 values per position.</summary>
    private const int ActivationBytesPerPosition = 64 * sizeof(float);

    private static MeshClientOptions Keeping(bool keep, Action<string>? log = null) =>
        new() { Mode = RouteMode.Chained, Verify = VerifyMode.Off, ServersKeepOutputs = keep, StepTimeout = TimeSpan.FromSeconds(10), Log = log };

    private static (InMemoryMesh Mesh, MeshClient Client) Swarm(IEnumerable<(int Start, int End)> spans, MeshClientOptions options)
    {
        var split = MeshModels.Stories260KPerBlock;
        var mesh = new InMemoryMesh();
        foreach (var (start, end) in spans) mesh.AddNode(split, new BlockRange(start, end));
        return (mesh, MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh), options));
    }

    [Fact]
    public async Task TheClientTakesInOneActivationPerTokenInsteadOfOnePerServerAndTheTextIsTheSame()
    {
        var received = new Dictionary<bool, long>();
        foreach (var keep in new[] { false, true })
        {
            var (mesh, client) = Swarm([(0, 2), (2, 3), (3, 5)], Keeping(keep));
            await using (mesh)
            await using (client)
            {
                await using var session = await client.OpenSessionAsync(256);
                Assert.Equal(3, session.Route.Count);
                var text = string.Concat(await new TextGenerator(client.Tokenizer, 256).GenerateAsync("", Greedy, session.StepAsync).ToListAsync());
                Assert.Equal(TestModels.Stories260KReferenceText, text);
                Assert.Equal(0, session.Recoveries);
                received[keep] = session.ActivationBytesReceived;
                Assert.Equal((keep ? 1 : 3) * session.Positions * (long)ActivationBytesPerPosition, session.ActivationBytesReceived);
            }
        }
        Assert.Equal(3 * received[true], received[false]);
    }

    [Fact]
    public async Task ServersKeepingOutputsNeedVerificationOff()
    {
        await using var mesh = new InMemoryMesh();
        var error = Assert.Throws<MeshException>(() => MeshClient.Open(MeshModels.Stories260KPerBlock, mesh.DialerFor("client"), new MeshDirectory(mesh),
            new MeshClientOptions { ServersKeepOutputs = true }));
        Assert.Equal(MeshErrorCode.InvalidArgument, error.Code);
        Assert.Contains("only with verification off", error.Message);
    }

    [Fact]
    public async Task ServersKilledMidGenerationAreReplacedFromTheInputsTheServerBeforeKeepsAndTheTextIsUnchanged()
    {
        // 16 seeded trials over two servers per span: in the first 8 one server of the route is killed at a random point, in
        // the last 8 two neighbours at once.

        for (var trial = 0; trial < 16; trial++)
        {
            var random = new Random(trial);
            var log = new List<string>();
            var (mesh, client) = Swarm([(0, 2), (2, 3), (3, 5), (0, 2), (2, 3), (3, 5)], Keeping(true, line => { lock (log) log.Add(line); }));
            await using (mesh)
            await using (client)
            {
                await using var session = await client.OpenSessionAsync(256);
                Assert.Equal(3, session.Route.Count);
                var first = random.Next(trial < 8 ? 0 : 1, 3);
                var victims = (trial < 8 ? [first] : new[] { first, first - 1 }).Select(i => session.Route[i].PeerId).ToList();
                var killAt = random.Next(1, 200);
                var pieces = new List<string>();
                var prompt = trial % 2 == 0 ? "" : "Once upon a time";
                await foreach (var piece in new TextGenerator(client.Tokenizer, 256).GenerateAsync(prompt, Greedy, session.StepAsync))
                {
                    pieces.Add(piece);
                    if (pieces.Count == killAt) foreach (var victim in victims) mesh.Kill(victim);
                }
                Assert.True(TestModels.Stories260KReferenceText == string.Concat(pieces), $"trial {trial}: killing {string.Join(", ", victims)} at piece {killAt} changed the text; log: {string.Join(" | ", log)}");
                Assert.True(session.Recoveries >= victims.Count, $"trial {trial}: {session.Recoveries} recoveries for {victims.Count} killed servers");
                Assert.All(victims, v => Assert.DoesNotContain(session.Route, h => h.PeerId == v));
                // Only the last server's outputs, the replays' and what recoveries fetched came here: less than every server's.
                Assert.True(session.ActivationBytesReceived < 3L * session.Positions * ActivationBytesPerPosition,
                    $"trial {trial}: {session.ActivationBytesReceived} activation bytes for {session.Positions} positions");

            }
        }
    }

    [Fact]
    public async Task WhenTheServerBeforeAFailedOneCannotSendWhatItKeepsBothAreReplacedAndTheTextIsUnchanged()
    {
        // The middle server hangs (it still reads, but nothing it sends arrives) and the last is killed: the last one's failure is
        // seen first, the fetch of its inputs from the middle one gets no answer, so the middle one is replaced first.
        var log = new List<string>();
        var (mesh, client) = Swarm([(0, 2), (2, 3), (3, 5), (2, 3), (3, 5)], Keeping(true, line => { lock (log) log.Add(line); }) with { StepTimeout = TimeSpan.FromSeconds(2) });
        await using (mesh)
        await using (client)
        {
            await using var session = await client.OpenSessionAsync(256);
            var (middle, last) = (session.Route[1].PeerId, session.Route[2].PeerId);
            var pieces = new List<string>();
            await foreach (var piece in new TextGenerator(client.Tokenizer, 256).GenerateAsync("Once upon a time", Greedy, session.StepAsync))
            {
                pieces.Add(piece);
                if (pieces.Count != 40) continue;
                mesh.Stall(middle);
                mesh.Kill(last);
            }
            Assert.Equal(TestModels.Stories260KReferenceText, string.Concat(pieces));
            Assert.DoesNotContain(session.Route, h => h.PeerId == middle || h.PeerId == last);
            lock (log) Assert.Contains(log, l => l.Contains(middle) && l.Contains("could not send the outputs it keeps"));
        }
    }
}
