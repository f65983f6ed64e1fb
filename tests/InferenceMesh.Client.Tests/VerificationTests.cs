using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Client.Tests;

public sealed class VerificationTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new(Temperature: 0f, MaxPositions: 128);

    static VerificationTests() => Environment.SetEnvironmentVariable(StageFault.AllowVariable, "1");

    /// <summary>Three servers of every block; the faulty one (when given) is the one routes prefer.</summary>
    internal static InMemoryMesh Swarm(StageFault? fault, bool mixExecutors = false)
    {
        var split = MeshModels.Stories260KPerBlock;
        var mesh = new InMemoryMesh();
        mesh.AddNode(split, new BlockRange(0, 5), fault: fault);
        mesh.AddNode(split, new BlockRange(0, 5), threads: 2);
        mesh.AddNode(split, new BlockRange(0, 5), executor: mixExecutors ? ExecutorKind.Ilgpu : ExecutorKind.Ort);
        return mesh;
    }

    /// <summary>A client of <paramref name="mesh"/> whose routes prefer <paramref name="preferred"/> (the first node when null).</summary>
    internal static MeshClient Client(InMemoryMesh mesh, MeshClientOptions options, string? preferred = null) =>
        MeshClient.Open(MeshModels.Stories260KPerBlock, mesh.DialerFor("client"), new MeshDirectory(mesh, preferred ?? mesh.Nodes[0].PeerId), options);

    /// <summary>
    /// Float16 outputs differ between honest replays by a few float16 rounding steps, ten times float32's tolerance: checked
    /// with <see cref="MeshClientOptions.CheckToleranceFloat16"/>, honest servers of every thread count and split pass every
    /// check in strict mode, while a server adding noise is still convicted in every session it serves.
    /// </summary>
    [Fact]
    public async Task Float16OutputsAreCheckedWithTheirOwnToleranceHonestServersPassAndALiarIsConvicted()
    {
        var split = MeshModels.LlamaGenAiFp16PerBlock;
        var options = new MeshClientOptions { Verify = VerifyMode.Strict, CheckWindow = 8 };
        var tolerance = options.CheckToleranceFor(DType.Float16);
        Assert.Equal(options.CheckTolerance, options.CheckToleranceFor(DType.Float32));
        await using (var mesh = Float16Swarm(split, fault: null))
        {
            var deviations = new List<double>();
            for (var seed = 0; seed < 24; seed++)
            {
                await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, mesh.Nodes[seed % mesh.Nodes.Count].PeerId),
                    options with { CheckSeed = seed, Mode = seed % 2 == 0 ? RouteMode.Chained : RouteMode.Relayed });
                await using var session = await client.OpenSessionAsync(64);
                await RandomWalkAsync(session, seed, 64);
                var report = session.Verification;
                Assert.Empty(report.Banned);
                Assert.NotEmpty(report.Checks);
                Assert.All(report.Checks, c => Assert.Equal(CheckVerdict.Passed, c.Verdict));
                deviations.AddRange(report.Checks.SelectMany(c => c.Deviations));
            }
            var overFloat32 = deviations.Count(d => d > options.CheckTolerance);
            output.WriteLine($"fp16 honest: {deviations.Count} replays, largest deviation {deviations.Max():G3} × RMS (tolerance {tolerance}); {overFloat32} would fail float32's {options.CheckTolerance}");
            Assert.True(deviations.Max() < tolerance / 4, $"honest fp16 deviation {deviations.Max()} is within a factor 4 of the tolerance {tolerance}");
        }
        await using (var mesh = Float16Swarm(split, StageFault.Parse(["noise=0.05"])))
        {
            var liar = mesh.Nodes[0].PeerId;
            for (var seed = 0; seed < 4; seed++)
            {
                await using var client = MeshClient.Open(split, mesh.DialerFor("client"), new MeshDirectory(mesh, liar), options with { CheckSeed = seed });
                await using var session = await client.OpenSessionAsync(64);
                var caught = await Assert.ThrowsAnyAsync<MeshException>(() => RandomWalkAsync(session, seed, 64));
                Assert.Equal(MeshErrorCode.IntegrityMismatch, caught.Code);
                Assert.Contains(liar, caught.Message);
                Assert.Contains(liar, session.Verification.Banned);
            }
        }
    }

    /// <summary>Five servers of the fp16 export: three of both blocks (1, 2 and 3 threads, the first faulty when given), one of each block.</summary>
    private static InMemoryMesh Float16Swarm(string split, StageFault? fault)
    {
        var mesh = new InMemoryMesh();
        mesh.AddNode(split, new BlockRange(0, 2), fault: fault);
        mesh.AddNode(split, new BlockRange(0, 2), threads: 2);
        mesh.AddNode(split, new BlockRange(0, 2), threads: 3);
        mesh.AddNode(split, new BlockRange(0, 1), threads: 2);
        mesh.AddNode(split, new BlockRange(1, 2));
        return mesh;
    }

    /// <summary>Steps <paramref name="session"/> through a 4-token prompt and seeded random tokens up to <paramref name="length"/> positions.</summary>
    private static async Task RandomWalkAsync(InferenceSession session, int seed, int length)
    {
        var random = new Random(seed);
        var logits = await session.StepAsync([1, 5, 9, 13], 0);
        for (var position = 4; position < length; position++) logits = await session.StepAsync([random.Next(logits.Length)], position);
    }

    public static TheoryData<string> Faults() => ["noise=0.05", "skip-block=2", "weights=fp16", "weights=int8", "weights=other-seed", "noise=1,rate=0.01"];

    /// <summary>
    /// Every session the liar told a lie in is convicted, and no other: whether a 1-in-100 fault lies in a session depends on
    /// its random id, so that fault runs sessions until three were lied in (read from the steps the liar received), not a fixed six.
    /// </summary>
    [Theory]
    [MemberData(nameof(Faults))]
    public async Task EveryFaultKindIsCaughtInStrictModeAndTheTextIsTheHonestText(string fault)
    {
        var stageFault = StageFault.Parse([fault]);
        await using var mesh = Swarm(stageFault);
        var liar = mesh.Nodes[0];
        int sessions = 0, liedIn = 0, detected = 0;
        for (var seed = 0; sessions < 6 || (liedIn < 3 && sessions < 24); seed++, sessions++)
        {
            var options = new GenerationOptions(Temperature: 1f, MaxPositions: 128, Seed: (ulong)seed + 1);
            await using var honest = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Off });
            honest.Routes.Ban(InferenceMesh.P2P.Identity.PeerId.Parse(liar.PeerId), "the reference runs on honest servers");
            var reference = (await honest.CompleteAsync("Once upon a time", options)).Text;
            mesh.TakeReceived(liar);
            await using var client = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = seed });
            var streamed = new List<string>();
            var result = await client.CompleteAsync("Once upon a time", options, streamed.Add);
            Assert.Equal(reference, result.Text);
            Assert.Equal(reference, string.Concat(streamed));
            var lied = LiedIn(mesh.TakeReceived(liar), stageFault);
            var report = result.Verification!;
            var convicted = report.Count(CheckVerdict.Convicted) > 0;
            Assert.True(lied == convicted, $"{fault} seed {seed}: the liar {(lied ? "lied" : "told no lie")} but was {(convicted ? "" : "not ")}convicted");
            if (convicted)
            {
                detected++;
                Assert.Contains(liar.PeerId, report.Banned);
                Assert.All(report.Evidence, e => Assert.True(e.VerifySignatures(), "the evidence carries the liar's own signatures"));
            }
            if (lied) liedIn++;
            Assert.DoesNotContain(mesh.Nodes[1].PeerId, report.Banned);
            Assert.DoesNotContain(mesh.Nodes[2].PeerId, report.Banned);
            output.WriteLine($"{fault} seed {seed}: {report.ChecksRun} checks, {string.Join(", ", report.Verdicts.Select(v => $"{v.Value} {v.Key}"))}, first detection at {report.FirstDetectionPosition}, restarts {report.Restarts}");
        }
        // Every fault but the 1-in-100 one lies in every session; that one must have lied in three to show anything.
        Assert.True(fault.Contains("rate") ? liedIn >= 3 : liedIn == sessions, $"{fault}: lied in {liedIn} of {sessions} sessions");
        Assert.Equal(liedIn, detected);
    }

    /// <summary>Whether any of <paramref name="frames"/> is a step covering a position <paramref name="fault"/> tampers with.</summary>
    private static bool LiedIn(IReadOnlyList<StageMessage> frames, StageFault fault) =>
        frames.OfType<Step>().Any(step => Enumerable.Range(step.StartPosition, (int)step.Activation.Shape[1]).Any(position => fault.Tampers(step.SessionId, position)));

    [Fact]
    public async Task HonestServersOnDifferentExecutorsAndThreadCountsAreNeverAccused()
    {
        await using var mesh = Swarm(null, mixExecutors: true);
        var worst = 0.0;
        var checks = 0;
        for (var seed = 0; seed < 3; seed++)
        {
            await using var client = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = seed, CheckWindow = 16 });
            var result = await client.CompleteAsync("", new GenerationOptions(Temperature: 1f, MaxPositions: 128, Seed: (ulong)seed + 1));
            var report = result.Verification!;
            Assert.Empty(report.Banned);
            Assert.Equal(0, report.Restarts);
            Assert.All(report.Checks, c => Assert.Equal(CheckVerdict.Passed, c.Verdict));
            checks += report.ChecksRun;
            worst = Math.Max(worst, report.Checks.SelectMany(c => c.Deviations).DefaultIfEmpty().Max());
        }
        output.WriteLine($"{checks} honest checks, largest deviation {worst:G4} × RMS");
        Assert.True(checks >= 3 * 8, $"only {checks} checks ran");
    }

    [Fact]
    public async Task ACheckLooksToTheValidatorExactlyLikeARecoveryReplay()
    {
        await using var mesh = Swarm(null);
        var validator = mesh.Nodes[2];
        // A recovery: the client replaces a killed server by replaying its inputs to the next one.
        await using (var recovering = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Off }))
        {
            recovering.Routes.Ban(InferenceMesh.P2P.Identity.PeerId.Parse(mesh.Nodes[1].PeerId), "leave node 2 as the only replacement");
            var session = await recovering.OpenSessionAsync(64);
            await session.StepAsync([1, 400, 500], 0);
            mesh.Kill(mesh.Nodes[0].PeerId);
            await session.StepAsync([300], 3);
            await session.DisposeAsync();
        }
        var recovery = validator.Received.Single(s => s.Count > 0);
        validator.Received.Clear();
        await using var mesh2 = Swarm(null);
        var validator2 = mesh2.Nodes[2];
        await using (var checking = Client(mesh2, new MeshClientOptions { Verify = VerifyMode.Strict, CheckWindow = 3, CheckSeed = 0 }))
        {
            checking.Routes.Ban(InferenceMesh.P2P.Identity.PeerId.Parse(mesh2.Nodes[1].PeerId), "leave node 2 as the only validator");
            var session = await checking.OpenSessionAsync(64);
            await session.StepAsync([1, 400, 500], 0);
            await session.StepAsync([300], 3);
            await session.DisposeAsync();
        }
        var check = validator2.Received.Single(s => s.Count > 0);
        Assert.Equal(Shape(recovery.Take(2)), Shape(check.Take(2)));
        var (recoveryStep, checkStep) = ((Step)recovery[1], (Step)check[1]);
        Assert.Equal(recoveryStep.Activation.Shape, checkStep.Activation.Shape);
        Assert.Equal(recoveryStep.Activation.Bytes.ToArray(), checkStep.Activation.Bytes.ToArray());
    }

    /// <summary>Each message with its session id's shape (the client's id replaced), step ids and block ranges: everything but the random session id.</summary>
    private static List<string> Shape(IEnumerable<StageMessage> messages) => messages.Select(m => m switch
    {
        OpenSession o => $"open {o.ModelId} {o.Blocks} max {o.MaxLength} session {o.SessionId.Length} chars, {o.SessionId.Count(c => c == '.')} dots",
        Step s => $"step pos {s.StartPosition} {s.Activation} route {s.Route.Count}",
        var other => other.Kind,
    }).ToList();

    [Fact]
    public async Task EvidenceWithAForgedSignatureOrMisattributedToAnotherServerFailsVerification()
    {
        await using var mesh = Swarm(StageFault.Parse(["noise=0.05"]));
        await using var client = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = 1 });
        var result = await client.CompleteAsync("", Greedy);
        var evidence = Assert.Single(result.Verification!.Evidence);
        Assert.True(evidence.VerifySignatures());
        // Someone else's claim: the same evidence, blamed on an honest server, is not signed by it.
        Assert.False((evidence with { Server = mesh.Nodes[1].PeerId }).VerifySignatures());
        // A tampered signature, or an output that is not the one signed, fails too.
        var forged = evidence.Commitments.ToList();
        forged[0] = forged[0] with { Signature = [.. forged[0].Signature.Select((b, i) => i == 0 ? (byte)(b ^ 1) : b)] };
        Assert.False((evidence with { Commitments = forged }).VerifySignatures());
        Assert.False((evidence with { Output = evidence.Input }).VerifySignatures());
    }

    [Fact]
    public async Task EvidenceConvictsOnlyWhenItsSignedOutputDiffersFromARerunSoAnHonestServerCannotBeFramed()
    {
        await using var mesh = Swarm(StageFault.Parse(["noise=0.05"]));
        await using var client = Client(mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = 2 });
        var evidence = Assert.Single((await client.CompleteAsync("", Greedy)).Verification!.Evidence);
        var holder = mesh.Nodes[2].Span;
        TensorData Rerun(TensorData input)
        {
            var session = $"rerun-{Guid.NewGuid():N}";
            try
            {
                var x = input;
                foreach (var stage in holder.Stages) x = stage.Run(session, x, 0);
                return x;
            }
            finally
            {
                foreach (var stage in holder.Stages) stage.CloseSession(session);
            }
        }
        var tolerance = new MeshClientOptions().CheckTolerance;
        Assert.True(evidence.Confirm(Rerun, tolerance));
        // An honest server's own signed statement about the same inputs re-runs honestly: no report can make it a conviction.
        var honest = mesh.Nodes[1];
        var output = Rerun(evidence.Input);
        var inputHash = StepCommitment.Hash(evidence.Input);
        var outputHash = StepCommitment.Hash(output);
        var positions = (int)evidence.Input.Shape[1];
        var signature = honest.Key.Sign(StepCommitment.SignedBytes(evidence.ModelId, evidence.SessionId, evidence.Blocks.Start, evidence.Blocks.End, 0, positions, inputHash, outputHash));
        var framed = evidence with { Server = honest.PeerId, Output = output, Commitments = [new StepCommitment(evidence.Blocks.Start, 0, positions, inputHash, outputHash, signature)] };
        Assert.True(framed.VerifySignatures());
        Assert.False(framed.Confirm(Rerun, tolerance));
        // The liar's evidence blamed on the honest server fails its signatures.
        Assert.False((evidence with { Server = honest.PeerId }).Confirm(Rerun, tolerance));
    }
}
