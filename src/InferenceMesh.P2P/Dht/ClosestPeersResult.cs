namespace InferenceMesh.P2P.Dht;

/// <summary>Result of <see cref="KadDht.GetClosestPeersAsync"/>.</summary>
/// <param name="Peers">Up to k peers that answered, closest to the key first.</param>
/// <param name="Stats">What it cost.</param>
public sealed record ClosestPeersResult(IReadOnlyList<KadPeer> Peers, LookupStats Stats);
