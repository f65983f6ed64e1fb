using InferenceMesh.P2P.Encoding;
using NSec.Cryptography;

namespace InferenceMesh.P2P.Identity;

/// <summary>
/// A node's libp2p identity: an Ed25519 key pair (via NSec/libsodium). Thread-safe for signing.
/// Dispose to free the native private key.
/// </summary>
public sealed class Ed25519KeyPair : IDisposable
{
    /// <summary>Raw Ed25519 seed (private key) length in bytes.</summary>
    public const int SeedLength = 32;

    private readonly Key _key;

    private Ed25519KeyPair(Key key)
    {
        _key = key;
        PublicKey = key.PublicKey.Export(KeyBlobFormat.RawPublicKey);
        PublicKeyProtobuf = Libp2pKeys.EncodeEd25519PublicKey(PublicKey);
        PeerId = PeerId.FromPublicKeyProtobuf(PublicKeyProtobuf);
    }

    /// <summary>A fresh random key pair.</summary>
    public static Ed25519KeyPair Generate() => new(Key.Create(SignatureAlgorithm.Ed25519, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }));

    /// <summary>The key pair for a 32-byte Ed25519 seed.</summary>
    public static Ed25519KeyPair FromSeed(ReadOnlySpan<byte> seed)
    {
        if (seed.Length != SeedLength)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"Ed25519 seed must be {SeedLength} bytes, got {seed.Length}");
        return new(Key.Import(SignatureAlgorithm.Ed25519, seed, KeyBlobFormat.RawPrivateKey, new KeyCreationParameters { ExportPolicy = KeyExportPolicies.AllowPlaintextExport }));
    }

    /// <summary>Decodes a libp2p <c>PrivateKey</c> protobuf (Ed25519 only: 64 bytes seed‖public, or a bare 32-byte seed).</summary>
    public static Ed25519KeyPair FromPrivateKeyProtobuf(ReadOnlySpan<byte> bytes)
    {
        var (type, data) = Libp2pKeys.DecodeKeyMessage(bytes);
        if (type != Libp2pKeys.KeyTypeEd25519)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"unsupported private key type {type}; only Ed25519 (1) is supported");
        if (data.Length is not (64 or 32))
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"Ed25519 private key must be 64 bytes, got {data.Length}");
        var pair = FromSeed(data.AsSpan(0, 32));
        if (data.Length == 64 && !data.AsSpan(32).SequenceEqual(pair.PublicKey))
        {
            pair.Dispose();
            throw new P2PException(P2PErrorCode.InvalidEncoding, "Ed25519 private key's public half does not match its seed");
        }
        return pair;
    }

    /// <summary>Raw 32-byte Ed25519 public key.</summary>
    public byte[] PublicKey { get; }

    /// <summary>The libp2p <c>PublicKey</c> protobuf encoding of <see cref="PublicKey"/>.</summary>
    public byte[] PublicKeyProtobuf { get; }

    /// <summary>This identity's PeerId.</summary>
    public PeerId PeerId { get; }

    /// <summary>Signs <paramref name="data"/>; returns the 64-byte signature.</summary>
    public byte[] Sign(ReadOnlySpan<byte> data) => SignatureAlgorithm.Ed25519.Sign(_key, data);

    /// <summary>The libp2p <c>PrivateKey</c> protobuf: type Ed25519, data = seed ‖ public key (64 bytes).</summary>
    public byte[] ExportPrivateKeyProtobuf()
    {
        var seed = _key.Export(KeyBlobFormat.RawPrivateKey);
        try
        {
            var data = new byte[64];
            seed.CopyTo(data, 0);
            PublicKey.CopyTo(data, 32);
            var w = new ProtoWriter();
            w.WriteVarint(1, Libp2pKeys.KeyTypeEd25519);
            w.WriteBytes(2, data);
            Array.Clear(data);
            return w.ToArray();
        }
        finally
        {
            Array.Clear(seed);
        }
    }

    public void Dispose() => _key.Dispose();
}
