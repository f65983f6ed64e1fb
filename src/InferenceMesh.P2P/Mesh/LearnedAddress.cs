namespace InferenceMesh.P2P.Mesh;

/// <summary>An address of this peer learned after start: how, the address, and who told (the mapping protocol, or the observing peer).</summary>
public sealed record LearnedAddress(LearnedAddressKind Kind, Multiaddr Address, string Source);
