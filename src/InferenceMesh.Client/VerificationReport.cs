namespace InferenceMesh.Client;

/// <summary>What verification did during one generation (over every restart of it) and what it cost.</summary>
/// <param name="Mode">The mode it ran in.</param>
/// <param name="CommitmentsChecked">Signed step commitments whose signature and hashes were checked against what arrived.</param>
/// <param name="Checks">Every replay check, in order.</param>
/// <param name="ReplayedPositions">Positions × hops run on validators (each check replays the hop's whole history once per validator).</param>
/// <param name="CheckTime">Wall time spent in checks, from this client's side.</param>
/// <param name="Restarts">Generations started again after a server was convicted.</param>
/// <param name="Banned">Servers banned by verification (convicted servers and lying validators).</param>
/// <param name="Evidence">What convicted each server.</param>
/// <param name="FirstDetectionPosition">The session length at the first conviction; null when none.</param>
public sealed record VerificationReport(VerifyMode Mode, int CommitmentsChecked, IReadOnlyList<CheckRecord> Checks, long ReplayedPositions, TimeSpan CheckTime,
    int Restarts, IReadOnlyList<string> Banned, IReadOnlyList<FraudEvidence> Evidence, int? FirstDetectionPosition)
{
    /// <summary>Servers whose conviction this generation published as a fraud report (the report stored by some peer).</summary>
    public IReadOnlyList<string> ReportsPublished { get; init; } = [];

    /// <summary>Every published report this client has judged so far, before routing through the accused.</summary>
    public IReadOnlyList<FraudJudgement> Judgements { get; init; } = [];

    /// <summary>Checks that ran (a validator answered).</summary>
    public int ChecksRun => Checks.Count(c => c.Verdict != CheckVerdict.NoValidator);

    /// <summary>Checks by verdict.</summary>
    public int Count(CheckVerdict verdict) => Checks.Count(c => c.Verdict == verdict);

    /// <summary>How many checks ended with each verdict, by name.</summary>
    public IReadOnlyDictionary<string, int> Verdicts => Checks.GroupBy(c => c.Verdict.ToString()).ToDictionary(g => g.Key, g => g.Count());
}
