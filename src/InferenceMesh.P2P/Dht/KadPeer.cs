using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>A peer listed in a message (<c>Message.Peer</c>): PeerId, addresses, connection hint.</summary>
public sealed record KadPeer(PeerId Id, IReadOnlyList<Multiaddr> Addresses, KadConnectionType Connection = KadConnectionType.NotConnected)
{
    /// <summary>A peer from a multiaddr ending in <c>/p2p/&lt;PeerId&gt;</c> (a <c>--bootstrap</c> argument); throws <see cref="DhtException"/> (InvalidMessage) without one.</summary>
    public static KadPeer FromMultiaddr(Multiaddr address)
    {
        var id = address.PeerId ?? throw new DhtException(DhtErrorCode.InvalidMessage, $"{address} does not end in /p2p/<PeerId>");
        return new KadPeer(id, [address.WithoutPeerId()]);
    }
}
