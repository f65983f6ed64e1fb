using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Protocols;

/// <summary>
/// What a peer says about itself over Identify (<c>/ipfs/id/1.0.0</c>, <c>/ipfs/id/push/1.0.0</c>).
/// Listen addresses the multiaddr parser does not know are left out.
/// </summary>
public sealed record IdentifyInfo
{
    public string? ProtocolVersion { get; init; }
    public string? AgentVersion { get; init; }
    /// <summary>The libp2p <c>PublicKey</c> protobuf, if sent.</summary>
    public byte[]? PublicKey { get; init; }
    public IReadOnlyList<Multiaddr> ListenAddresses { get; init; } = [];
    /// <summary>The address the remote sees this side at.</summary>
    public Multiaddr? ObservedAddress { get; init; }
    public IReadOnlyList<string> Protocols { get; init; } = [];
    /// <summary>The PeerId of <see cref="PublicKey"/>, or null.</summary>
    public PeerId? PeerId => PublicKey is null ? null : PeerId.FromPublicKeyProtobuf(PublicKey);
}
