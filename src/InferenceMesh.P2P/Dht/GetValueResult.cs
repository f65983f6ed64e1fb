namespace InferenceMesh.P2P.Dht;

/// <summary>Result of <see cref="KadDht.GetValueAsync"/>.</summary>
/// <param name="Value">The selected (or, for merging namespaces, merged) value; null when none was found.</param>
/// <param name="Stats">What it cost.</param>
public sealed record GetValueResult(byte[]? Value, LookupStats Stats);
