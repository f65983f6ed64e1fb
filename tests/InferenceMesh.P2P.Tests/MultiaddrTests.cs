namespace InferenceMesh.P2P.Tests;

public class MultiaddrTests
{
    [Theory]
    [InlineData("/ip4/127.0.0.1/tcp/4001", "047f000001060fa1")]
    [InlineData("/ip6/::1/tcp/0", "2900000000000000000000000000000001060000")]
    [InlineData("/dns4/example.com/tcp/443", "360b6578616d706c652e636f6d0601bb")]
    [InlineData("/ip4/1.2.3.4/udp/53", "040102030491020035")]
    public void TextAndBinaryAgree(string text, string hex)
    {
        var m = Multiaddr.Parse(text);
        Assert.Equal(hex, Convert.ToHexStringLower(m.ToBytes()));
        Assert.Equal(text, m.ToString());
        Assert.Equal(m, Multiaddr.FromBytes(Convert.FromHexString(hex)));
    }

    [Fact]
    public void P2pAndCircuitRoundTrip()
    {
        const string id = "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5";
        var text = $"/ip4/10.0.0.1/tcp/1/p2p/{id}/p2p-circuit/p2p/{id}";
        var m = Multiaddr.Parse(text);
        Assert.Equal(text, m.ToString());
        Assert.Equal(text, Multiaddr.FromBytes(m.ToBytes()).ToString());
        Assert.Equal(id, m.PeerId!.ToString());
        Assert.Equal("/ip4/10.0.0.1/tcp/1", Multiaddr.Parse($"/ip4/10.0.0.1/tcp/1/p2p/{id}").WithoutPeerId().ToString());
        Assert.Equal($"/dns/a.b/tcp/5/p2p/{id}", Multiaddr.Parse($"/dns/a.b/tcp/5/ipfs/{id}").ToString());
    }

    [Theory]
    [InlineData("/quic/1")]
    [InlineData("ip4/1.2.3.4")]
    [InlineData("/ip4/1.2.3")]
    [InlineData("/ip4/1.2.3.4/tcp/65536")]
    [InlineData("/ip4/1.2.3.4/tcp")]
    [InlineData("/p2p/notapeer")]
    public void BadTextIsRejected(string text)
    {
        var e = Assert.ThrowsAny<P2PException>(() => Multiaddr.Parse(text));
        Assert.Equal(P2PErrorCode.InvalidEncoding, e.P2PCode);
    }

    [Fact]
    public void UnknownBinaryCodeIsRejectedWithItsNumber()
    {
        var e = Assert.Throws<P2PException>(() => Multiaddr.FromBytes([0xcc, 0x03]));
        Assert.Contains("unknown multiaddr protocol code 460", e.Message);
        Assert.Throws<P2PException>(() => Multiaddr.FromBytes([0x04, 1, 2])); // truncated ip4
        Assert.Throws<P2PException>(() => Multiaddr.FromBytes([0x35, 0x05, (byte)'a'])); // truncated dns
    }

    [Fact]
    public void RandomBytesNeverCrashParser()
    {
        var rng = new Random(1234);
        for (var i = 0; i < 5000; i++)
        {
            var b = new byte[rng.Next(0, 40)];
            rng.NextBytes(b);
            try
            {
                var m = Multiaddr.FromBytes(b);
                Assert.Equal(m, Multiaddr.Parse(m.ToString()));
            }
            catch (P2PException)
            {
            }
        }
    }
}
