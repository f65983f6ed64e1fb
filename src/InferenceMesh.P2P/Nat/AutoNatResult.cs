using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Nat;

/// <summary>One AutoNAT server's answer: its status and text, and the address it reached when <see cref="AutoNatStatus.Ok"/>.</summary>
public sealed record AutoNatResult(PeerId Server, AutoNatStatus Status, string Text, Multiaddr? Address);
