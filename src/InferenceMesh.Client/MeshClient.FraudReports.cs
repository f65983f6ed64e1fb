using System.Collections.Concurrent;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>Fraud reports: publishing a conviction's evidence, and judging other clients' reports before routing through the accused.</summary>
public sealed partial class MeshClient
{
    private readonly CancellationTokenSource _closing = new();
    private int _disposed;
    private readonly ConcurrentDictionary<PeerId, (Task Judging, DateTimeOffset At)> _screened = new();
    private readonly ConcurrentQueue<FraudJudgement> _judgements = new();

    /// <summary>Every published report this client has judged, in the order judged.</summary>
    public IReadOnlyList<FraudJudgement> Judgements => [.. _judgements];

    /// <summary>Publishes a conviction's evidence within <see cref="MeshClientOptions.FraudReportTimeout"/>; false (and a log line) when it was not stored.</summary>
    internal async Task<bool> PublishAsync(FraudEvidence evidence, CancellationToken cancellation)
    {
        if (Options.FraudReports is not { } board || !Options.PublishFraudReports) return false;
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        bounded.CancelAfter(Options.FraudReportTimeout);
        try
        {
            await board.PublishAsync(evidence, bounded.Token).ConfigureAwait(false);
            Options.Log?.Invoke($"published a fraud report against {evidence.Server} (blocks {evidence.Blocks}, {evidence.Input.Shape[1]} positions)");
            return true;
        }
        catch (Exception e) when (e is MeshException or IOException || e is OperationCanceledException && !cancellation.IsCancellationRequested)
        {
            Options.Log?.Invoke($"could not publish the fraud report against {evidence.Server}: {e.Message}");
            return false;
        }
    }

    /// <summary>Reads and judges the reports against every listed server not judged within <see cref="MeshClientOptions.FraudReportRefresh"/>; bans the convicted.</summary>
    private async Task ScreenAsync(IReadOnlyList<ServerInfo> servers, CancellationToken cancellation)
    {
        var now = Options.Time.GetUtcNow();
        var judging = servers.Select(s => s.Peer).Distinct().Select(peer => _screened.AddOrUpdate(peer,
            p => (JudgeReportsAsync(p, _closing.Token), now),
            (p, before) => now - before.At < Options.FraudReportRefresh ? before : (JudgeReportsAsync(p, _closing.Token), now)).Judging);
        await Task.WhenAll(judging).WaitAsync(cancellation).ConfigureAwait(false);
    }

    private async Task JudgeReportsAsync(PeerId accused, CancellationToken cancellation)
    {
        await Task.Yield();
        IReadOnlyList<PublishedFraudReport> reports;
        try
        {
            reports = await Options.FraudReports!.ReadAsync(Manifest.ModelId, accused, cancellation).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException)
        {
            Options.Log?.Invoke($"could not read fraud reports against {accused}: {e.Message}");
            return;
        }
        foreach (var report in reports)
        {
            var judgement = await JudgeAsync(accused, report, cancellation).ConfigureAwait(false);
            _judgements.Enqueue(judgement);
            Options.Log?.Invoke($"fraud report against {accused} by {report.Reporter}: {judgement.Verdict} ({judgement.Detail})");
            if (judgement.Verdict == FraudVerdict.Confirmed)
            {
                Routes.Ban(accused, $"a published fraud report, re-run here: {judgement.Detail}", Options.FraudBanDuration);
                return;
            }
        }
    }

    /// <summary>
    /// The reporter's word counts for nothing: the evidence must carry the accused's own signatures for this model, and two
    /// validators (neither the accused nor the reporter) must re-run its inputs to outputs that agree with each other and not
    /// with the signed one — the same rule that convicts in a check.
    /// </summary>
    private async Task<FraudJudgement> JudgeAsync(PeerId accused, PublishedFraudReport report, CancellationToken cancellation)
    {
        FraudJudgement Verdict(FraudVerdict verdict, string detail, List<string>? validators = null, List<double>? deviations = null) =>
            new(accused.ToString(), report.Reporter, verdict, validators ?? [], deviations ?? [], detail);
        if (report.Evidence is not { } evidence) return Verdict(FraudVerdict.Unreadable, report.Problem ?? "no evidence");
        if (evidence.Server != accused.ToString() || evidence.ModelId != Manifest.ModelId || evidence.Blocks.End > Manifest.BlockCount || !evidence.VerifySignatures())
            return Verdict(FraudVerdict.Forged, "the evidence is not signed by the accused for this model, these blocks and these inputs and outputs");
        var exclude = new HashSet<PeerId> { accused };
        if (PeerId.TryParse(report.Reporter, out var reporter)) exclude.Add(reporter!);
        var candidates = (await Routes.ValidatorsAsync(evidence.Blocks, exclude, cancellation).ConfigureAwait(false)).ToArray();
        Random.Shared.Shuffle(candidates);
        var tolerance = Options.CheckToleranceFor(evidence.Output.Type);
        var positions = (int)evidence.Input.Shape[1];
        var validators = new List<string>();
        var deviations = new List<double>();
        TensorData? first = null;
        await using var judge = new InferenceSession(this, Guid.NewGuid().ToString("N"), positions, new VerificationTally(VerifyMode.Off), Random.Shared);
        foreach (var candidate in candidates)
        {
            if (await judge.ReplayAsync(candidate, evidence.Blocks, evidence.Input, cancellation).ConfigureAwait(false) is not { } replay) continue;
            var rerun = evidence.RerunOutputs(replay);
            var (deviation, bad) = InferenceSession.Compare(evidence.Output, rerun, tolerance);
            validators.Add(candidate.Peer.ToString());
            deviations.Add(deviation);
            if (bad is null)
                return Verdict(FraudVerdict.RerunsHonestly, $"a re-run matches the signed output within {tolerance:G3} × RMS ({deviation:G3})", validators, deviations);
            if (first is null)
            {
                first = rerun;
                continue;
            }
            return InferenceSession.Compare(first, rerun, tolerance).FirstBad is null
                ? Verdict(FraudVerdict.Confirmed, $"two re-runs agree and differ from the signed output by {deviations.Min():G3} × RMS", validators, deviations)
                : Verdict(FraudVerdict.Unresolved, "the two re-runs disagree with each other", validators, deviations);
        }
        return Verdict(FraudVerdict.Unresolved, $"{validators.Count} of the 2 validators needed answered", validators, deviations);
    }
}
