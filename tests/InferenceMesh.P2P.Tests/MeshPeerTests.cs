using InferenceMesh.P2P.Mesh;

namespace InferenceMesh.P2P.Tests;

public sealed class MeshPeerTests
{
    [Fact]
    public void UnspecifiedListenAddressIsAdvertisedAsTheInterfaceAddresses()
    {
        var advertised = MeshPeer.Advertised([Multiaddr.Parse("/ip4/0.0.0.0/tcp/4001"), Multiaddr.Parse("/ip4/127.0.0.1/tcp/4002")]);
        var texts = advertised.Select(a => a.ToString()).ToList();
        Assert.DoesNotContain(texts, t => t.Contains("0.0.0.0"));
        Assert.Contains("/ip4/127.0.0.1/tcp/4001", texts);
        Assert.Contains("/ip4/127.0.0.1/tcp/4002", texts);
        Assert.All(advertised.Where(a => a.ToString().EndsWith("/tcp/4001", StringComparison.Ordinal)), a => Assert.Equal(System.Net.Sockets.AddressFamily.InterNetwork, a.TryGetTcpEndPoint()!.AddressFamily));
    }
}
