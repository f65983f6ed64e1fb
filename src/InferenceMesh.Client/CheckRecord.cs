using InferenceMesh.Core;

namespace InferenceMesh.Client;

/// <summary>One check: a hop's inputs replayed as one prefill on validators and compared with what the hop returned.</summary>
/// <param name="Server">The checked server.</param>
/// <param name="Blocks">Its blocks.</param>
/// <param name="Positions">Positions replayed (the session's length at the check).</param>
/// <param name="Validators">The validators asked, in order.</param>
/// <param name="Deviations">Per validator, the largest deviation of the hop's output from the validator's, as max |Δ| / rms of the row.</param>
/// <param name="FirstBadPosition">The first position over the tolerance by the first validator; null when none.</param>
/// <param name="Verdict">How the check ended.</param>
/// <param name="Elapsed">Wall time of the check (validator sessions opened, replays run, compared).</param>
public sealed record CheckRecord(string Server, BlockRange Blocks, int Positions, IReadOnlyList<string> Validators, IReadOnlyList<double> Deviations,
    int? FirstBadPosition, CheckVerdict Verdict, TimeSpan Elapsed);
