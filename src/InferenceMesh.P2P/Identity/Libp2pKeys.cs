using InferenceMesh.P2P.Encoding;
using NSec.Cryptography;

namespace InferenceMesh.P2P.Identity;

/// <summary>libp2p key encodings (peer-ids spec): <c>message PublicKey { KeyType Type = 1; bytes Data = 2; }</c>.</summary>
public static class Libp2pKeys
{
    /// <summary>KeyType value for Ed25519.</summary>
    public const int KeyTypeEd25519 = 1;

    /// <summary>Largest key message accepted from the wire, in bytes.</summary>
    public const int MaxKeyMessageLength = 1024;

    /// <summary>Encodes a raw 32-byte Ed25519 public key as the libp2p <c>PublicKey</c> protobuf (36 bytes).</summary>
    public static byte[] EncodeEd25519PublicKey(ReadOnlySpan<byte> rawPublicKey)
    {
        if (rawPublicKey.Length != 32)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"Ed25519 public key must be 32 bytes, got {rawPublicKey.Length}");
        var w = new ProtoWriter();
        w.WriteVarint(1, KeyTypeEd25519);
        w.WriteBytes(2, rawPublicKey);
        return w.ToArray();
    }

    /// <summary>Decodes a libp2p <c>PublicKey</c> protobuf that must hold an Ed25519 key; returns the raw 32 bytes.</summary>
    public static byte[] DecodeEd25519PublicKey(ReadOnlySpan<byte> protobuf)
    {
        var (type, data) = DecodeKeyMessage(protobuf);
        if (type != KeyTypeEd25519)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"unsupported public key type {type}; only Ed25519 (1) is supported");
        if (data.Length != 32)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"Ed25519 public key must be 32 bytes, got {data.Length}");
        return data;
    }

    /// <summary>Verifies an Ed25519 signature made by <paramref name="rawPublicKey"/>; false on any mismatch.</summary>
    public static bool VerifyEd25519(ReadOnlySpan<byte> rawPublicKey, ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature)
    {
        if (signature.Length != 64)
            return false;
        if (!NSec.Cryptography.PublicKey.TryImport(SignatureAlgorithm.Ed25519, rawPublicKey, KeyBlobFormat.RawPublicKey, out var pk) || pk is null)
            return false;
        return SignatureAlgorithm.Ed25519.Verify(pk, data, signature);
    }

    internal static (int Type, byte[] Data) DecodeKeyMessage(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > MaxKeyMessageLength)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"key message of {bytes.Length} bytes exceeds {MaxKeyMessageLength}");
        var r = new ProtoReader(bytes);
        int? type = null;
        byte[]? data = null;
        while (r.TryReadTag(out var field))
        {
            switch (field)
            {
                case 1 when r.WireType == 0: type = (int)Math.Min(r.ReadVarint(), int.MaxValue); break;
                case 2: data = r.ReadBytes().ToArray(); break;
                default: r.Skip(); break;
            }
        }
        if (type is null || data is null)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "key message lacks its Type or Data field");
        return (type.Value, data);
    }
}
