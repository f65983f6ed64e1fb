namespace InferenceMesh.Client;

/// <summary>A fraud report as a reader finds it: who reported, and the evidence, or why it could not be read.</summary>
/// <param name="Reporter">The reporter's PeerId (its signature on the report was checked by the board).</param>
/// <param name="Evidence">The evidence, not yet judged; null when it could not be fetched or decoded.</param>
/// <param name="Problem">Why <paramref name="Evidence"/> is null.</param>
public sealed record PublishedFraudReport(string Reporter, FraudEvidence? Evidence, string? Problem);
