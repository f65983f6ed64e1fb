using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>TCP transport dialling on loopback: where a reusePort transport's connections come from.</summary>
public class TcpTransportTests
{
    [Fact]
    public async Task ReusePortTransportDialsFromItsListenPortAndFallsBackWhenThatFourTupleIsTaken()
    {
        var ct = TestHosts.Token();
        var punching = new TcpTransport(reusePort: true);
        await using var own = await punching.ListenAsync(Multiaddr.Parse("/ip4/127.0.0.1/tcp/0"), ct);
        await using var far = await new TcpTransport().ListenAsync(Multiaddr.Parse("/ip4/127.0.0.1/tcp/0"), ct);
        var port = own.ListenAddress.TryGetTcpEndPoint()!.Port;

        // Behind an endpoint-independent NAT, peers then observe the port a hole punch will come from.
        await using var first = await punching.DialAsync(far.ListenAddress, ct);
        await using var accepted = await far.AcceptAsync(ct);
        Assert.Equal(port, first.LocalAddress.TryGetTcpEndPoint()!.Port);
        Assert.Equal(port, accepted.RemoteAddress.TryGetTcpEndPoint()!.Port);

        await using var second = await punching.DialAsync(far.ListenAddress, ct);
        await using var acceptedSecond = await far.AcceptAsync(ct);
        Assert.NotEqual(port, second.LocalAddress.TryGetTcpEndPoint()!.Port);

        await using var plain = await new TcpTransport().DialAsync(far.ListenAddress, ct);
        await using var acceptedPlain = await far.AcceptAsync(ct);
        Assert.NotEqual(port, plain.LocalAddress.TryGetTcpEndPoint()!.Port);
    }

    [Fact]
    public async Task ReusePortTransportDialsItsOwnListenerFromAnotherPort()
    {
        var ct = TestHosts.Token();
        var transport = new TcpTransport(reusePort: true);
        await using var listener = await transport.ListenAsync(Multiaddr.Parse("/ip4/127.0.0.1/tcp/0"), ct);

        // From the listen port to itself would be a TCP self-connect: a socket talking to itself, with no listener involved.
        await using var conn = await transport.DialAsync(listener.ListenAddress, ct);
        await using var accepted = await listener.AcceptAsync(ct);
        Assert.NotEqual(listener.ListenAddress, conn.LocalAddress);
        Assert.Equal(conn.LocalAddress, accepted.RemoteAddress);
    }
}
