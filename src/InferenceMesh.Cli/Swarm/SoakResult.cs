namespace InferenceMesh.Cli.Swarm;

/// <summary>
/// What a soak saw: every generation's outcome, every kill, and every process's resources over time (times in
/// seconds since the soak's clock started, memory in MiB). Written as JSON by <c>inferencemesh bench soak</c>.
/// </summary>
public sealed record SoakResult(
    DateTimeOffset StartedAt,
    string Machine,
    int Nodes,
    int Replicas,
    int Sessions,
    double DurationSeconds,
    double KillPeriodSeconds,
    int Seed,
    int Positions,
    double WarmUpSeconds,
    double ElapsedSeconds,
    int Completed,
    int Exact,
    int Recoveries,
    IReadOnlyList<SoakResult.Mismatch> Mismatches,
    IReadOnlyList<SoakResult.Failure> Failures,
    IReadOnlyList<SoakResult.Kill> Kills,
    IReadOnlyList<SoakResult.Sample> Samples,
    IReadOnlyList<SoakResult.Growth> GrowthChecks)
{
    /// <summary>Generations that ended without their text and without a <see cref="Core.MeshException"/> (another exception, or hung past the session timeout).</summary>
    public int LostWithoutTypedError => Failures.Count(f => !f.Typed);

    /// <summary>Every completed text exact, no generation lost without a typed error, no series grew, and at least one generation completed.</summary>
    public bool Passed => Completed > 0 && Mismatches.Count == 0 && LostWithoutTypedError == 0 && !GrowthChecks.Any(g => g.Grew);

    /// <summary>A completed generation whose text differs from the one-process text of the same prompt.</summary>
    /// <param name="FirstDifference">Index of the first character that differs.</param>
    public sealed record Mismatch(double AtSeconds, int Session, string Prompt, int FirstDifference, string Expected, string Actual);

    /// <summary>A generation that ended with an exception; <paramref name="Typed"/> when it was a <see cref="Core.MeshException"/> (its <paramref name="Code"/>).</summary>
    public sealed record Failure(double AtSeconds, int Session, string Prompt, bool Typed, string? Code, string Type, string Message);

    /// <summary>A node SIGKILLed at <paramref name="AtSeconds"/> and restarted (<paramref name="Error"/> when the restart failed).</summary>
    public sealed record Kill(double AtSeconds, string Node, int Pid, int? NewPid, double RestartSeconds, string? Error);

    /// <summary>One process's resources at one time: resident memory (VmRSS), open file descriptors, threads.</summary>
    /// <param name="Process">A serving node's name, <c>bootstrap</c>, or <c>client</c> (the soak's own process, which holds every session).</param>
    /// <param name="AgeSeconds">Time since this process was started (or since the soak started, for the client).</param>
    /// <param name="Counters">A serving node's own gauges, scraped from its metrics endpoint; null for the bootstrap and the client, or when the scrape failed.</param>
    public sealed record Sample(double AtSeconds, string Process, int Pid, double AgeSeconds, double RssMiB, int Fds, int Threads, NodeCounters? Counters = null);

    /// <summary>A node's own gauges at one sample: sessions holding KV state, KV-cache MiB reserved and the budget, open libp2p connections.</summary>
    public sealed record NodeCounters(int SessionsOpen, double KvReservedMiB, double KvBudgetMiB, int Connections);

    /// <summary>
    /// The growth check of one process's resource: the median of its warmed-up samples in the last third of the ages
    /// seen (the process's age when sampled, so a restarted node's processes line up) against that in the second third.
    /// <paramref name="Judged"/> is false when either third had fewer than 3 such samples.
    /// </summary>
    public sealed record Growth(string Process, string Resource, bool Judged, double SecondThirdMedian, double LastThirdMedian, double Limit, bool Grew);
}
