using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The <c>/pk/</c> namespace: key <c>/pk/</c> ‖ PeerId multihash bytes, value the peer's libp2p
/// <c>PublicKey</c> protobuf, valid when it hashes to that PeerId.
/// </summary>
public sealed class PublicKeyRecordValidator : IRecordValidator
{
    private static readonly byte[] Prefix = "/pk/"u8.ToArray();

    /// <summary>The <c>/pk/</c> key of <paramref name="peer"/>.</summary>
    public static byte[] KeyFor(PeerId peer) => [.. Prefix, .. peer.Span];

    public void Validate(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        if (!key.StartsWith(Prefix))
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record key lacks its prefix");
        PeerId keyPeer, valuePeer;
        try
        {
            keyPeer = PeerId.FromBytes(key[Prefix.Length..]);
            if (value.Length > Libp2pKeys.MaxKeyMessageLength)
                throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record value too long for a public key");
            valuePeer = PeerId.FromPublicKeyProtobuf(value);
        }
        catch (P2PException e)
        {
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record key is not a PeerId", e);
        }
        if (keyPeer != valuePeer)
            throw new DhtException(DhtErrorCode.InvalidRecord, "/pk/ record value is not the public key of the PeerId in its key");
    }

    public int Select(ReadOnlySpan<byte> key, IReadOnlyList<byte[]> values) => 0;
}
