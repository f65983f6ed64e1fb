namespace InferenceMesh.P2P.Dht;

/// <summary>One provider of a key.</summary>
/// <param name="Peer">The provider and its addresses.</param>
/// <param name="ExpiresAt">When the record lapses unless re-announced.</param>
public sealed record ProviderEntry(KadPeer Peer, DateTimeOffset ExpiresAt);
