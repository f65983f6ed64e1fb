using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Client.Tests;

public sealed class FraudReportTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Greedy = new(Temperature: 0f, MaxPositions: 96);

    static FraudReportTests() => Environment.SetEnvironmentVariable(StageFault.AllowVariable, "1");

    [Fact]
    public async Task AConvictionIsPublishedAndEveryOtherClientThatReadsItBansTheLiarBeforeRoutingThroughIt()
    {
        await using var mesh = VerificationTests.Swarm(StageFault.Parse(["noise=0.05"]));
        var board = new MemoryFraudReportBoard();
        var liar = mesh.Nodes[0].PeerId;
        await using (var reporter = VerificationTests.Client(mesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = 1, FraudReports = board }))
        {
            var report = (await reporter.CompleteAsync("Once upon a time", Greedy)).Verification!;
            Assert.Contains(liar, report.ReportsPublished);
            var full = report.Evidence[0];
            var published = FraudEvidence.Decode(Assert.Single(board.Bytes(reporter.Manifest.ModelId, liar)), "reporter");
            Assert.True(published.VerifySignatures(), "the published evidence carries the liar's own signatures");
            Assert.True(published.Output.Shape[1] < full.Output.Shape[1], "only the wrong step's outputs are published");
            output.WriteLine($"evidence {full.Input.Bytes.Length + full.Output.Bytes.Length} B of tensors, published {board.Bytes(reporter.Manifest.ModelId, liar)[0].Length} B, "
                + $"{published.Input.Shape[1]} inputs, outputs from position {published.OutputStart}");
        }
        // Clients that never saw the lie, not verifying at all: each re-runs the evidence on two validators and bans the liar first.
        for (var i = 0; i < 2; i++)
        {
            await using var other = VerificationTests.Client(mesh, new MeshClientOptions { Verify = VerifyMode.Off, FraudReports = board, CheckSeed = i });
            var result = await other.CompleteAsync("Once upon a time", Greedy);
            var judgement = Assert.Single(other.Judgements);
            Assert.Equal(FraudVerdict.Confirmed, judgement.Verdict);
            Assert.Equal(2, judgement.Validators.Count);
            Assert.DoesNotContain(liar, judgement.Validators);
            Assert.True(other.Routes.IsBanned(PeerId.Parse(liar)));
            Assert.DoesNotContain(result.Route, hop => hop.PeerId == liar);
            Assert.Equal(judgement, Assert.Single(result.Verification!.Judgements));
        }
    }

    [Fact]
    public async Task ForgedAndFalseReportsAreRejectedByEveryOtherClientAndTheHonestServerKeepsServing()
    {
        await using var liarMesh = VerificationTests.Swarm(StageFault.Parse(["noise=0.05"]));
        FraudEvidence genuine;
        await using (var reporter = VerificationTests.Client(liarMesh, new MeshClientOptions { Verify = VerifyMode.Strict, CheckSeed = 2 }))
            genuine = (await reporter.CompleteAsync("", Greedy)).Verification!.Evidence[0];
        var board = new MemoryFraudReportBoard();

        // A second mesh of honest servers only, with the same model: every report against its node 1 is false.
        await using var mesh = VerificationTests.Swarm(null);
        var honest = mesh.Nodes[1];
        var model = genuine.ModelId;
        // 1. The liar's evidence relabelled as the honest server's: not its signatures.
        board.Add(model, honest.PeerId, "forger-1", (genuine with { Server = honest.PeerId }).Encode());
        // 2. A tampered signature on evidence "signed" by the honest server.
        var honestOutput = Rerun(mesh.Nodes[2].Span, genuine.Input);
        var framed = HonestStatement(honest, genuine, honestOutput);
        var tampered = framed.Commitments.ToList();
        tampered[0] = tampered[0] with { Signature = [.. tampered[0].Signature.Select((b, i) => i == 5 ? (byte)(b ^ 1) : b)] };
        board.Add(model, honest.PeerId, "forger-2", (framed with { Commitments = tampered }).Encode());
        // 3. The honest server's real signed statement, called a lie: it re-runs honestly.
        board.Add(model, honest.PeerId, "forger-3", framed.Encode());
        // 4. Garbage.
        board.Add(model, honest.PeerId, "forger-4", [1, 2, 3, 4, 5]);

        for (var i = 0; i < 3; i++)
        {
            await using var other = VerificationTests.Client(mesh, new MeshClientOptions { Verify = VerifyMode.Off, FraudReports = board, CheckSeed = i }, preferred: honest.PeerId);
            var result = await other.CompleteAsync("", Greedy);
            var verdicts = other.Judgements.ToDictionary(j => j.Reporter, j => j.Verdict);
            Assert.Equal(FraudVerdict.Forged, verdicts["forger-1"]);
            Assert.Equal(FraudVerdict.Forged, verdicts["forger-2"]);
            Assert.Equal(FraudVerdict.RerunsHonestly, verdicts["forger-3"]);
            Assert.Equal(FraudVerdict.Unreadable, verdicts["forger-4"]);
            Assert.False(other.Routes.IsBanned(PeerId.Parse(honest.PeerId)));
            Assert.Contains(result.Route, hop => hop.PeerId == honest.PeerId);
            output.WriteLine(string.Join("; ", other.Judgements.Select(j => $"{j.Reporter}: {j.Verdict} ({j.Detail})")));
        }
    }

    private static TensorData Rerun(ServedSpan holder, TensorData input)
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

    /// <summary>What <paramref name="server"/> would really sign for <paramref name="evidence"/>'s inputs: one step over all of them, with its honest output.</summary>
    private static FraudEvidence HonestStatement(InMemoryMesh.MeshNode server, FraudEvidence evidence, TensorData output)
    {
        var positions = (int)evidence.Input.Shape[1];
        var inputHash = StepCommitment.Hash(evidence.Input);
        var outputHash = StepCommitment.Hash(output);
        var signature = server.Key.Sign(StepCommitment.SignedBytes(evidence.ModelId, evidence.SessionId, evidence.Blocks.Start, evidence.Blocks.End, 0, positions, inputHash, outputHash));
        return evidence with
        {
            Server = server.PeerId, Output = output, OutputStart = 0,
            Commitments = [new StepCommitment(evidence.Blocks.Start, 0, positions, inputHash, outputHash, signature)],
        };
    }
}
