namespace InferenceMesh.P2P.Dht;

/// <summary>Result of <see cref="KadDht.FindProvidersAsync"/>.</summary>
/// <param name="Providers">Distinct providers found.</param>
/// <param name="Stats">What it cost.</param>
public sealed record FindProvidersResult(IReadOnlyList<KadPeer> Providers, LookupStats Stats);
