using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>The pool counters are process-wide: these tests run alone, after the parallel ones.</summary>
[Collection(nameof(SessionBufferTests))]
[CollectionDefinition(nameof(SessionBufferTests), DisableParallelization = true)]
public sealed class SessionBufferTests
{
    private static readonly GenerationOptions Greedy = new(Temperature: 0f, MaxPositions: 256);

    [Theory]
    [InlineData(RouteMode.Chained, false)]
    [InlineData(RouteMode.Relayed, true)]
    public async Task EveryPooledBufferASessionKeptForReplaysAndChecksGoesBackToThePoolWhenItEnds(RouteMode mode, bool killARouteNode)
    {
        var baseline = PooledBuffers.Outstanding;
        var rentsBefore = TensorData.PoolRents;
        var split = MeshModels.Stories260KPerBlock;
        // No frame recording: the recorder's decoded copies are never returned. The routes prefer the first node; a second server of each span gives checks a validator
        // and a killed node has a replacement.
        var mesh = new InMemoryMesh(recordFrames: false);
        foreach (var blocks in new[] { new BlockRange(0, 2), new BlockRange(2, 5), new BlockRange(0, 2), new BlockRange(2, 5) }) mesh.AddNode(split, blocks);
        await using (mesh)
        {
            await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, mesh.Nodes[0].PeerId),
                new MeshClientOptions { Mode = mode, Verify = VerifyMode.Strict, CheckWindow = 32, StepTimeout = TimeSpan.FromSeconds(10) });
            var pieces = new List<string>();
            // Strict mode hands text out a checked window at a time: the third hand-out comes about 96 positions in.
            var result = await client.CompleteAsync("", Greedy, piece =>
            {
                pieces.Add(piece);
                if (killARouteNode && pieces.Count == 3) mesh.Kill(mesh.Nodes[0].PeerId);
            });
            Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
            Assert.True(result.Verification!.ChecksRun > 0, "strict mode checked the hops on validators");
            if (killARouteNode) Assert.True(client.Recoveries >= 1, "the killed node was replaced");
            Assert.True(result.ActivationBytesReceived >= 2L * 256 * 64 * sizeof(float), $"the client received every hop's output: {result.ActivationBytesReceived} bytes");
        }
        // Hundreds of activations were rented on both sides of every hop; after the session and the servers, none is left out.
        Assert.True(TensorData.PoolRents - rentsBefore > 500, $"only {TensorData.PoolRents - rentsBefore} buffers were rented");
        await Poll.UntilAsync(() => Task.FromResult(PooledBuffers.Outstanding <= baseline), "every pooled buffer to be returned", detail: () => $"{PooledBuffers.Outstanding - baseline} buffers still out");
        Assert.True(PooledBuffers.Outstanding <= baseline);
    }

    [Fact]
    public async Task EveryOutputServersKeptAndEveryInputTheClientFetchedGoesBackToThePoolWhenTheSessionEnds()
    {
        var baseline = PooledBuffers.Outstanding;
        var split = MeshModels.Stories260KPerBlock;
        var mesh = new InMemoryMesh(recordFrames: false);
        foreach (var blocks in new[] { new BlockRange(0, 2), new BlockRange(2, 3), new BlockRange(3, 5), new BlockRange(2, 3), new BlockRange(3, 5) }) mesh.AddNode(split, blocks);
        await using (mesh)
        {
            await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, mesh.Nodes[0].PeerId),
                new MeshClientOptions { Verify = VerifyMode.Off, ServersKeepOutputs = true, StepTimeout = TimeSpan.FromSeconds(10) });
            var pieces = new List<string>();
            // The last server dies 100 pieces in: its replacement replays the inputs the middle server kept, fetched by the client.
            var result = await client.CompleteAsync("", Greedy, piece =>
            {
                pieces.Add(piece);
                if (pieces.Count == 100) mesh.Kill(mesh.Nodes[2].PeerId);
            });
            Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
            Assert.True(client.Recoveries >= 1, "the killed node was replaced");
        }
        await Poll.UntilAsync(() => Task.FromResult(PooledBuffers.Outstanding <= baseline), "every pooled buffer to be returned", detail: () => $"{PooledBuffers.Outstanding - baseline} buffers still out");
        Assert.True(PooledBuffers.Outstanding <= baseline);
    }
}
