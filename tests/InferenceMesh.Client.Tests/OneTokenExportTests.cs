using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Client.Tests;

/// <summary>
/// torch.onnx.export's GPT-2 declares <c>input_ids [batch, 1]</c>, and its blocks give wrong activations (not an error) when
/// fed more than one position per step. A check or a recovery replays a hop's whole history, so it must replay it one
/// position per step too, and a server refuses a longer step instead of answering it wrongly.
/// </summary>
public sealed class OneTokenExportTests(ITestOutputHelper output)
{
    /// <summary>The export in 3 stages (blocks 0:4, 4:8, 8:12).</summary>
    private static readonly Lazy<string> Split = new(() =>
    {
        var directory = TestModels.NewTempDirectory("gpt2-three-stages");
        ModelStore.Split(TestModels.Gpt2TorchExport, n => BlockRange.SplitEvenly(n, 3), directory);
        return directory;
    });

    /// <summary>Servers of blocks 0:8 and of 8:12, each with 1, 2 and 3 ONNX Runtime threads.</summary>
    private static InMemoryMesh Swarm()
    {
        var mesh = new InMemoryMesh();
        foreach (var blocks in new[] { new BlockRange(0, 8), new BlockRange(8, 12) })
            for (var threads = 1; threads <= 3; threads++) mesh.AddNode(Split.Value, blocks, threads: threads);
        return mesh;
    }

    private static MeshClient Client(InMemoryMesh mesh, string preferred, MeshClientOptions options) =>
        MeshClient.Open(Split.Value, mesh.DialerFor("client"), new MeshDirectory(mesh, preferred), options);

    [Fact]
    public void TheExportsStepsCarryOnePosition()
    {
        Assert.Equal(1, Manifest.Load(Split.Value).MaxStepPositions);
        Assert.Equal(int.MaxValue, Manifest.Load(MeshModels.Stories260KPerBlock).MaxStepPositions);
    }

    /// <summary>
    /// Strict checks after every other position pass on every honest server, and a session whose first server is killed
    /// at position 5 rebuilds its replacement's cache and goes on with the outputs of a session never interrupted.
    /// Replayed in one step, each check differed by 0.229 × RMS and the recovered session's outputs drifted.
    /// A library user's step of two tokens is refused with a typed error before it leaves the client.
    /// </summary>
    [Fact]
    public async Task ChecksAndARecoveryReplayOnePositionPerStepSoHonestServersPassAndTheOutputsStayTheSame()
    {
        await using var mesh = Swarm();
        var ids = Enumerable.Range(0, 8).Select(i => new Random(i).Next(12)).ToArray();
        List<float[]> reference;
        await using (var honest = Client(mesh, mesh.Nodes[1].PeerId, new MeshClientOptions { Verify = VerifyMode.Off }))
            reference = await WalkAsync(honest, ids, killAt: null, mesh);
        var strict = new MeshClientOptions { Verify = VerifyMode.Strict, CheckWindow = 2 };
        for (var preferred = 0; preferred < mesh.Nodes.Count; preferred++)
        {
            await using var client = Client(mesh, mesh.Nodes[preferred].PeerId, strict with { CheckSeed = preferred });
            var checkedOutputs = await WalkAsync(client, ids, killAt: null, mesh);
            AssertClose(reference, checkedOutputs, $"strict, first server {preferred}");
        }
        await using (var client = Client(mesh, mesh.Nodes[0].PeerId, strict))
        {
            await using (var session = await client.OpenSessionAsync(8))
            {
                var tooLong = await Assert.ThrowsAsync<MeshException>(() => session.StepAsync([3, 7], 0).AsTask());
                Assert.Equal(MeshErrorCode.ShapeMismatch, tooLong.Code);
                Assert.Contains("at most 1 per step", tooLong.Message);
            }
            var recovered = await WalkAsync(client, ids, killAt: 5, mesh);
            AssertClose(reference, recovered, "after a recovery");
        }
    }

    /// <summary>Steps <paramref name="ids"/> one at a time, checking the verification report at the end; kills the first hop's server after <paramref name="killAt"/> positions.</summary>
    private async Task<List<float[]>> WalkAsync(MeshClient client, int[] ids, int? killAt, InMemoryMesh mesh)
    {
        await using var session = await client.OpenSessionAsync(ids.Length);
        var outputs = new List<float[]>();
        for (var position = 0; position < ids.Length; position++)
        {
            if (position == killAt) mesh.Kill(session.Route[0].PeerId);
            outputs.Add(await session.StepAsync([ids[position]], position));
        }
        var report = session.Verification;
        if (client.Options.Verify == VerifyMode.Strict)
        {
            Assert.NotEmpty(report.Checks);
            Assert.All(report.Checks, c => Assert.True(c.Verdict == CheckVerdict.Passed, $"check of {c.Blocks} on {c.Server}: {c.Verdict}, deviations {string.Join(", ", c.Deviations)}"));
            Assert.Empty(report.Banned);
            output.WriteLine($"{report.ChecksRun} checks passed, largest deviation {report.Checks.SelectMany(c => c.Deviations).DefaultIfEmpty().Max():G3} × RMS, recoveries {session.Recoveries}");
        }
        if (killAt is not null) Assert.Equal(1, session.Recoveries);
        return outputs;
    }

    private static void AssertClose(List<float[]> expected, List<float[]> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (var p = 0; p < expected.Count; p++)
        {
            var rms = Math.Sqrt(expected[p].Average(v => (double)v * v));
            var deviation = expected[p].Zip(actual[p], (a, b) => Math.Abs(a - b)).Max() / rms;
            Assert.True(deviation < 1e-4, $"{what}: position {p} differs by {deviation:G3} × RMS");
        }
    }

    [Fact]
    public async Task AServerRefusesAStepOfMorePositionsThanTheModelTakesAndServesTheSessionAfter()
    {
        await using var mesh = Swarm();
        var server = mesh.Nodes[3];
        await using var channel = await mesh.ConnectorFor("client").ConnectAsync(server.PeerId, [], default);
        await channel.SendAsync(new OpenSession(1, "s", server.Span.Manifest.ModelId, new BlockRange(8, 12), 8));
        Assert.IsType<SessionOpened>(await channel.ReceiveAsync());
        await channel.SendAsync(new Step(2, "s", 0, TensorData.FromFloats([1, 2, 4], new float[8]), []));
        var error = Assert.IsType<StageError>(await channel.ReceiveAsync());
        Assert.Equal(StageErrorCode.ShapeMismatch, error.Code);
        Assert.Contains("at most 1", error.Message);
        await channel.SendAsync(new Step(3, "s", 0, TensorData.FromFloats([1, 1, 4], [1, 2, 3, 4]), []));
        var result = Assert.IsType<StepResult>(await channel.ReceiveAsync());
        Assert.Equal([1L, 1, 4], result.Activation.Shape);
    }
}
