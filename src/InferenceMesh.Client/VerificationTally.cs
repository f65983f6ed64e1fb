namespace InferenceMesh.Client;

/// <summary>Collects a generation's verification over its sessions; one flow at a time, like the session.</summary>
internal sealed class VerificationTally(VerifyMode mode)
{
    public VerifyMode Mode { get; } = mode;
    public int CommitmentsChecked { get; set; }
    public List<CheckRecord> Checks { get; } = [];
    public long ReplayedPositions { get; set; }
    public TimeSpan CheckTime { get; set; }
    public int Restarts { get; set; }
    public List<string> Banned { get; } = [];
    public List<FraudEvidence> Evidence { get; } = [];
    public int? FirstDetectionPosition { get; set; }
    public List<string> ReportsPublished { get; } = [];

    public VerificationReport Report() =>
        new(Mode, CommitmentsChecked, [.. Checks], ReplayedPositions, CheckTime, Restarts, [.. Banned], [.. Evidence], FirstDetectionPosition) { ReportsPublished = [.. ReportsPublished] };
}
