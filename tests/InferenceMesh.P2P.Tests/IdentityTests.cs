using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Tests;

public class IdentityTests
{
    private static readonly byte[] Seed01 = Enumerable.Repeat((byte)1, 32).ToArray();

    [Fact]
    public void Seed01GivesTheIssueTestVector()
    {
        using var key = Ed25519KeyPair.FromSeed(Seed01);
        Assert.Equal("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", Convert.ToHexStringLower(key.PublicKey));
        Assert.Equal("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5", key.PeerId.ToString());
        Assert.Equal("080112208a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", Convert.ToHexStringLower(key.PublicKeyProtobuf));
    }

    [Fact]
    public void PeerIdParsesBase58AndCidAndRoundTrips()
    {
        using var key = Ed25519KeyPair.FromSeed(Seed01);
        var text = key.PeerId.ToString();
        Assert.Equal(key.PeerId, PeerId.Parse(text));
        var cid = key.PeerId.ToCidString();
        Assert.StartsWith("bafz", cid);
        Assert.Equal(key.PeerId, PeerId.Parse(cid));
        Assert.Equal(key.PublicKey, PeerId.Parse(text).TryGetEd25519PublicKey());
    }

    [Fact]
    public void PeerIdParsesLegacyQmSha256Form()
    {
        // A well-known RSA-era PeerId (sha2-256 multihash).
        var p = PeerId.Parse("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N");
        Assert.Equal(34, p.Span.Length);
        Assert.Equal(0x12, p.Span[0]);
        Assert.Null(p.TryGetEd25519PublicKey());
        Assert.Equal("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N", p.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("12D3KooW0000")] // '0' is not base58
    [InlineData("xyz")]
    [InlineData("bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi")] // CID with dag-pb codec
    [InlineData("12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH")] // truncated
    public void PeerId_RejectsMalformedText(string text)
    {
        var e = Assert.ThrowsAny<P2PException>(() => PeerId.Parse(text));
        Assert.Equal(P2PErrorCode.InvalidEncoding, e.P2PCode);
    }

    [Fact]
    public void SignAndVerifyDetectsTampering()
    {
        using var key = Ed25519KeyPair.Generate();
        var sig = key.Sign("hello"u8);
        Assert.True(Libp2pKeys.VerifyEd25519(key.PublicKey, "hello"u8, sig));
        sig[5] ^= 1;
        Assert.False(Libp2pKeys.VerifyEd25519(key.PublicKey, "hello"u8, sig));
    }

    [Fact]
    public void PrivateKeyProtobufRoundTrips()
    {
        using var key = Ed25519KeyPair.Generate();
        var bytes = key.ExportPrivateKeyProtobuf();
        Assert.Equal(4 + 64, bytes.Length);
        using var back = Ed25519KeyPair.FromPrivateKeyProtobuf(bytes);
        Assert.Equal(key.PeerId, back.PeerId);
        bytes[^1] ^= 1; // public half no longer matches the seed
        Assert.Throws<P2PException>(() => Ed25519KeyPair.FromPrivateKeyProtobuf(bytes));
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void KeyFileIsCreated0600AndRefusedWhenWorldReadable()
    {
        var dir = Directory.CreateTempSubdirectory("p2p-key");
        try
        {
            var path = Path.Combine(dir.FullName, "node.key");
            using var key = KeyFile.LoadOrCreate(path);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            using (var again = KeyFile.LoadOrCreate(path))
                Assert.Equal(key.PeerId, again.PeerId);
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
            var e = Assert.Throws<P2PException>(() => KeyFile.Load(path));
            Assert.Equal(P2PErrorCode.KeyFile, e.P2PCode);
            Assert.Contains("chmod 600", e.Message);
            Assert.Throws<P2PException>(() => KeyFile.Save(path, key));
        }
        finally
        {
            dir.Delete(true);
        }
    }

    [Fact]
    public void MalformedVarintsInBinaryPeerIdsAndMultiaddrsAreInvalidEncoding()
    {
        Assert.Equal(P2PErrorCode.InvalidEncoding, Assert.Throws<P2PException>(() => PeerId.FromBytes([0x80, 0x00, 0x00])).P2PCode);
        Assert.Equal(P2PErrorCode.InvalidEncoding, Assert.Throws<P2PException>(() => Multiaddr.FromBytes([0x84, 0x00])).P2PCode);
        Assert.Equal(P2PErrorCode.InvalidEncoding, Assert.Throws<P2PException>(() => Multiaddr.FromBytes([0xFF])).P2PCode);
    }

    [Fact]
    public void Base58RoundTripsRandomBytes()
    {
        var rng = new Random(7);
        for (var i = 0; i < 200; i++)
        {
            var bytes = new byte[rng.Next(0, 50)];
            rng.NextBytes(bytes);
            if (bytes.Length > 0 && rng.Next(3) == 0) bytes[0] = 0;
            Assert.Equal(bytes, Base58.Decode(Base58.Encode(bytes)));
            Assert.Equal(bytes, Base32.Decode(Base32.Encode(bytes)));
        }
    }
}
