namespace InferenceMesh.P2P.Dht;

/// <summary>Result of <see cref="KadDht.FindPeerAsync"/>.</summary>
/// <param name="Peer">The peer with its addresses, or null when not found.</param>
/// <param name="Stats">What it cost.</param>
public sealed record FindPeerResult(KadPeer? Peer, LookupStats Stats);
