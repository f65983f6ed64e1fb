using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Security.Cryptography;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

public class HostTests
{
    public const string EchoProtocol = "/inferencemesh/test/echo/1.0.0";

    internal static async Task EchoAsync(Libp2pStream s, CancellationToken ct)
    {
        while (true)
        {
            var r = await s.Input.ReadAsync(ct);
            foreach (var seg in r.Buffer) await s.Output.WriteAsync(seg, ct);
            s.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await s.Output.CompleteAsync();
    }

    internal static async Task<byte[]> ReadAllAsync(PipeReader reader, CancellationToken ct)
    {
        var ms = new MemoryStream();
        while (true)
        {
            var r = await reader.ReadAsync(ct);
            foreach (var seg in r.Buffer) ms.Write(seg.Span);
            reader.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        return ms.ToArray();
    }

    [Theory]
    [InlineData("memory", true)]
    [InlineData("memory", false)]
    [InlineData("tcp", true)]
    [InlineData("tcp", false)]
    public async Task ConnectIdentifyPingEcho(string transport, bool early)
    {
        var pool = new TrackingMemoryPool();
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        await using (var a = TestHosts.Create(net, pool, early: early))
        await using (var b = TestHosts.Create(net, pool, early: early))
        {
            b.SetHandler(EchoProtocol, EchoAsync);
            var listen = transport == "memory" ? "/memory/0" : "/ip4/127.0.0.1/tcp/0";
            await a.StartAsync([Multiaddr.Parse(listen)], ct);
            await b.StartAsync([Multiaddr.Parse(listen)], ct);

            var conn = await a.DialAsync(TestHosts.Dialable(b), ct);
            Assert.Equal(b.PeerId, conn.RemotePeer);
            Assert.Equal(early, conn.MuxerFromHandshake);
            Assert.Equal("/yamux/1.0.0", conn.Muxer);
            Assert.Same(conn, await a.DialAsync(TestHosts.Dialable(b), ct)); // pooled

            var info = await conn.Identified.Within();
            Assert.Equal(b.PeerId, info.PeerId);
            Assert.Contains(EchoProtocol, info.Protocols);
            Assert.Contains(PingProtocol.ProtocolId, info.Protocols);
            Assert.Equal(b.ListenAddresses, info.ListenAddresses);
            Assert.Equal(conn.LocalAddress, info.ObservedAddress);
            Assert.Equal("inferencemesh/0.1.0", info.AgentVersion);

            var back = b.GetConnection(a.PeerId);
            Assert.NotNull(back);
            Assert.Equal(a.PeerId, (await back!.Identified.Within()).PeerId);

            var rtts = await a.PingAsync(TestHosts.Dialable(b), 3, ct);
            Assert.Equal(3, rtts.Count);

            await using (var s = await conn.OpenStreamAsync(EchoProtocol, ct))
            {
                var data = RandomNumberGenerator.GetBytes(300_000);
                var reading = ReadAllAsync(s.Input, ct);
                await s.Output.WriteAsync(data, ct);
                await s.Output.CompleteAsync();
                Assert.Equal(data, await reading.Within());
            }

            var e = await Assert.ThrowsAsync<P2PException>(() => conn.OpenStreamAsync("/nope/1.0.0", ct));
            Assert.Equal(P2PErrorCode.ProtocolNotSupported, e.P2PCode);
        }
        await pool.AssertAllReturnedAsync();
    }

    [Fact]
    public async Task DialRefusesAPeerOtherThanTheOneAskedFor()
    {
        var net = new MemoryNetwork();
        var log = new LogSink();
        var ct = TestHosts.Token();
        await using var a = TestHosts.Create(net, log: log);
        await using var b = TestHosts.Create(net);
        await b.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        using var other = Ed25519KeyPair.Generate();
        var wrong = b.ListenAddresses[0].WithPeerId(other.PeerId);
        var e = await Assert.ThrowsAsync<P2PException>(() => a.DialAsync(wrong, ct));
        Assert.Equal(P2PErrorCode.PeerIdMismatch, e.P2PCode);
        Assert.Contains(log.Lines, l => l.Contains("PeerIdMismatch"));
        Assert.Empty(a.Connections);
        // the right one still works
        Assert.Equal(b.PeerId, (await a.DialAsync(TestHosts.Dialable(b), ct)).RemotePeer);
    }

    [Fact]
    public async Task IdentifyPushAnnouncesANewProtocol()
    {
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        await using var a = TestHosts.Create(net);
        await using var b = TestHosts.Create(net);
        await b.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        var conn = await a.DialAsync(TestHosts.Dialable(b), ct);
        await conn.Identified.Within();
        Assert.DoesNotContain("/late/1.0.0", conn.RemoteInfo!.Protocols);
        b.SetHandler("/late/1.0.0", (s, _) => Task.CompletedTask);
        await TestHosts.WaitUntilAsync(() => conn.RemoteInfo!.Protocols.Contains("/late/1.0.0"), "Identify-push of /late/1.0.0", 5);
        Assert.Equal(b.PeerId, conn.RemoteInfo.PeerId);
    }

    [Theory]
    [InlineData("dns4")]
    [InlineData("dns")]
    public async Task DialsADnsName(string dns)
    {
        var ct = TestHosts.Token();
        await using var a = TestHosts.Create();
        await using var b = TestHosts.Create();
        await b.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var port = b.ListenAddresses[0].TryGetTcpEndPoint()!.Port;
        var byName = Multiaddr.Parse($"/{dns}/localhost/tcp/{port}/p2p/{b.PeerId}");
        var conn = await a.DialAsync(byName, ct);
        Assert.Equal(b.PeerId, conn.RemotePeer);
        Assert.Equal(IPAddress.Loopback, conn.RemoteAddress.TryGetTcpEndPoint()!.Address);
        Assert.Single(await a.PingAsync(byName, 1, ct));
    }

    [Fact]
    public async Task ADnsNameThatDoesNotResolveFailsToDialWithATypedError()
    {
        var ct = TestHosts.Token();
        await using var a = TestHosts.Create();
        // .invalid never resolves (RFC 6761), so the resolver answers at once.
        var e = await Assert.ThrowsAsync<P2PException>(() => a.DialAsync(Multiaddr.Parse("/dns4/no-such-node.invalid/tcp/4001"), ct));
        Assert.Equal(P2PErrorCode.DialFailed, e.P2PCode);
        Assert.Contains("no-such-node.invalid", e.Message);
        Assert.Empty(a.Connections);
    }

    [Fact]
    public async Task ConcurrentDialsShareOneConnection()
    {
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        await using var a = TestHosts.Create(net);
        await using var b = TestHosts.Create(net);
        await b.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        var conns = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => a.DialAsync(TestHosts.Dialable(b), ct))).Within();
        Assert.All(conns, c => Assert.Same(conns[0], c));
    }
}
