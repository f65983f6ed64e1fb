using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;

namespace InferenceMesh.P2P.Identity;

/// <summary>
/// A libp2p PeerId: the multihash of the peer's <c>PublicKey</c> protobuf (identity multihash when
/// that is at most 42 bytes, as for Ed25519; sha2-256 otherwise). Immutable, compares by bytes.
/// Text: base58btc (<c>12D3KooW…</c>, <c>Qm…</c>); the CIDv1 form (<c>bafz…</c>, codec libp2p-key) parses too.
/// </summary>
public sealed class PeerId : IEquatable<PeerId>
{
    private const int IdentityCode = 0x00;
    private const int Sha256Code = 0x12;
    private const int LibP2pKeyCodec = 0x72;
    /// <summary>Largest PeerId multihash accepted, in bytes.</summary>
    public const int MaxLength = 128;

    private readonly byte[] _bytes;
    private readonly int _hash;

    private PeerId(byte[] multihash)
    {
        _bytes = multihash;
        _hash = BitConverter.ToInt32(System.Security.Cryptography.SHA256.HashData(multihash), 0);
    }

    /// <summary>The PeerId of a libp2p <c>PublicKey</c> protobuf.</summary>
    public static PeerId FromPublicKeyProtobuf(ReadOnlySpan<byte> publicKeyProtobuf)
    {
        if (publicKeyProtobuf.Length <= 42)
        {
            var mh = new byte[2 + publicKeyProtobuf.Length];
            mh[0] = IdentityCode;
            mh[1] = (byte)publicKeyProtobuf.Length;
            publicKeyProtobuf.CopyTo(mh.AsSpan(2));
            return new PeerId(mh);
        }
        var sha = new byte[34];
        sha[0] = Sha256Code;
        sha[1] = 32;
        System.Security.Cryptography.SHA256.HashData(publicKeyProtobuf, sha.AsSpan(2));
        return new PeerId(sha);
    }

    /// <summary>The PeerId of a raw 32-byte Ed25519 public key.</summary>
    public static PeerId FromEd25519PublicKey(ReadOnlySpan<byte> rawPublicKey) =>
        FromPublicKeyProtobuf(Libp2pKeys.EncodeEd25519PublicKey(rawPublicKey));

    /// <summary>Parses the binary multihash form; throws <see cref="P2PException"/> (InvalidEncoding) if malformed.</summary>
    public static PeerId FromBytes(ReadOnlySpan<byte> multihash)
    {
        if (multihash.Length > MaxLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"PeerId of {multihash.Length} bytes exceeds {MaxLength}");
        if (!UnsignedVarint.TryDecode(multihash, out var code, out var n1) || !UnsignedVarint.TryDecode(multihash[n1..], out var len, out var n2))
            throw new P2PException(P2PErrorCode.InvalidEncoding, "PeerId multihash has a malformed varint");
        if ((ulong)(multihash.Length - n1 - n2) != len)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "PeerId multihash length does not match its digest");
        if (code == IdentityCode)
        {
            if (len > 42)
                throw new P2PException(P2PErrorCode.InvalidEncoding, "identity-multihash PeerId longer than 42 bytes");
        }
        else if (code == Sha256Code)
        {
            if (len != 32)
                throw new P2PException(P2PErrorCode.InvalidEncoding, "sha2-256 PeerId digest must be 32 bytes");
        }
        else
        {
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"PeerId multihash code 0x{code:x} is neither identity nor sha2-256");
        }
        return new PeerId(multihash.ToArray());
    }

    /// <summary>Parses base58btc multihash text or a CIDv1 (multibase 'b' base32 or 'z' base58, codec libp2p-key).</summary>
    public static PeerId Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text.Length == 0)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "empty PeerId");
        if (text[0] is '1' or 'Q')
            return FromBytes(Base58.Decode(text));
        byte[] cid = text[0] switch
        {
            'b' or 'B' => Base32.Decode(text.AsSpan(1)),
            'z' => Base58.Decode(text.AsSpan(1)),
            _ => throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{Truncate(text)}' is not a PeerId (base58btc multihash or CIDv1)"),
        };
        if (!UnsignedVarint.TryDecode(cid, out var version, out var n1) || !UnsignedVarint.TryDecode(cid.AsSpan(n1), out var codec, out var n2))
            throw new P2PException(P2PErrorCode.InvalidEncoding, "PeerId CID has a malformed varint");
        if (version != 1 || codec != LibP2pKeyCodec)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"CID is version {version} codec 0x{codec:x}; a PeerId needs CIDv1 with codec libp2p-key (0x72)");
        return FromBytes(cid.AsSpan(n1 + n2));
    }

    /// <summary>Parses without throwing.</summary>
    public static bool TryParse(string? text, out PeerId? peerId)
    {
        try
        {
            peerId = text is null ? null : Parse(text);
            return peerId is not null;
        }
        catch (P2PException)
        {
            peerId = null;
            return false;
        }
    }

    /// <summary>The multihash bytes (a copy).</summary>
    public byte[] ToBytes() => (byte[])_bytes.Clone();

    /// <summary>The multihash bytes without copying.</summary>
    public ReadOnlySpan<byte> Span => _bytes;

    /// <summary>The raw Ed25519 public key inlined in an identity-multihash PeerId, or null.</summary>
    public byte[]? TryGetEd25519PublicKey()
    {
        if (_bytes[0] != IdentityCode)
            return null;
        try
        {
            return Libp2pKeys.DecodeEd25519PublicKey(_bytes.AsSpan(2));
        }
        catch (P2PException)
        {
            return null;
        }
    }

    /// <summary>The CIDv1 text form (base32, codec libp2p-key).</summary>
    public string ToCidString()
    {
        var cid = new byte[2 + _bytes.Length];
        cid[0] = 1;
        cid[1] = LibP2pKeyCodec;
        _bytes.CopyTo(cid, 2);
        return "b" + Base32.Encode(cid);
    }

    /// <summary>Base58btc text, e.g. <c>12D3KooW…</c>.</summary>
    public override string ToString() => Base58.Encode(_bytes);

    public bool Equals(PeerId? other) => other is not null && _bytes.AsSpan().SequenceEqual(other._bytes);
    public override bool Equals(object? obj) => obj is PeerId p && Equals(p);
    public override int GetHashCode() => _hash;
    public static bool operator ==(PeerId? a, PeerId? b) => a is null ? b is null : a.Equals(b);
    public static bool operator !=(PeerId? a, PeerId? b) => !(a == b);

    private static string Truncate(string s) => s.Length > 64 ? s[..64] + "…" : s;
}
