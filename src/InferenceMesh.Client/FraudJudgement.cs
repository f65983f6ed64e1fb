namespace InferenceMesh.Client;

/// <summary>One published fraud report, judged by this client before it routed through the accused.</summary>
/// <param name="Accused">The server the report is against.</param>
/// <param name="Reporter">Who published it.</param>
/// <param name="Verdict">The judgement.</param>
/// <param name="Validators">Servers that re-ran the evidence, in order.</param>
/// <param name="Deviations">Per validator, the largest deviation of the signed output from its re-run (max |Δ| / rms of the row).</param>
/// <param name="Detail">Why, in words.</param>
public sealed record FraudJudgement(string Accused, string Reporter, FraudVerdict Verdict, IReadOnlyList<string> Validators, IReadOnlyList<double> Deviations, string Detail);
