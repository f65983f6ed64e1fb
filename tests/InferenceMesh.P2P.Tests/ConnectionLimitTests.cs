using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Transport;
using Microsoft.Extensions.Time.Testing;

namespace InferenceMesh.P2P.Tests;

/// <summary>
/// The host's pool stays bounded: idle connections close, and at the limit the idlest makes room. Time passes on
/// a <see cref="FakeTimeProvider"/> given to the host whose clock matters; the waits are for events, never for time.
/// </summary>
public class ConnectionLimitTests
{
    private static Task WaitForNoStreamsAsync(Libp2pConnection conn) =>
        TestHosts.WaitUntilAsync(() => conn.Session.StreamCount == 0, "the connection's streams to end");

    /// <summary>Waits until <paramref name="remote"/> has identified <paramref name="local"/>, so no Identify stream opens later.</summary>
    private static async Task RemoteIdentifiedAsync(Libp2pHost remote, Libp2pHost local)
    {
        await TestHosts.WaitUntilAsync(() => remote.Connections.Any(c => c.RemotePeer == local.PeerId), "the remote holding the connection");
        await remote.Connections.Single(c => c.RemotePeer == local.PeerId).Identified.Within();
    }

    private static async Task EchoOnceAsync(Libp2pConnection conn, CancellationToken ct)
    {
        await using var s = await conn.OpenStreamAsync(HostTests.EchoProtocol, ct);
        var reading = HostTests.ReadAllAsync(s.Input, ct);
        await s.Output.WriteAsync(new byte[] { 1, 2, 3 }, ct);
        await s.Output.CompleteAsync();
        Assert.Equal(new byte[] { 1, 2, 3 }, await reading.Within());
    }

    private static async Task<byte> EchoByteAsync(Libp2pStream s, byte b, CancellationToken ct)
    {
        await s.Output.WriteAsync(new[] { b }, ct);
        var r = await s.Input.ReadAsync(ct);
        var first = r.Buffer.FirstSpan[0];
        s.Input.AdvanceTo(r.Buffer.GetPosition(1));
        return first;
    }

    [Fact]
    public async Task AnIdleConnectionClosesAfterTheTimeoutAndANewStreamDialsAfresh()
    {
        var pool = new TrackingMemoryPool();
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        var time = new FakeTimeProvider();
        await using (var a = TestHosts.Create(net, pool, configure: o => o with { IdleConnectionTimeout = TimeSpan.FromMilliseconds(300), Time = time }))
        await using (var b = TestHosts.Create(net, pool))
        {
            b.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
            await b.StartAsync([Multiaddr.Parse("/memory/0")], ct);
            var conn = await a.DialAsync(TestHosts.Dialable(b), ct);
            await conn.Identified.Within();
            await RemoteIdentifiedAsync(b, a);
            await EchoOnceAsync(conn, ct);
            await WaitForNoStreamsAsync(conn);

            time.Advance(TimeSpan.FromMilliseconds(250));
            Assert.Equal(TimeSpan.FromMilliseconds(250), conn.IdleTime);
            Assert.False(conn.IsClosed);
            time.Advance(TimeSpan.FromMilliseconds(100));
            await TestHosts.WaitUntilAsync(() => conn.IsClosed, "closing the idle connection");
            Assert.Empty(a.Connections);
            await TestHosts.WaitUntilAsync(() => b.Connections.Count == 0, "the remote seeing the close");

            // The pool no longer offers it: the next stream to the same PeerId dials a new connection.
            await using var s = await a.NewStreamAsync(TestHosts.Dialable(b), [HostTests.EchoProtocol], ct);
            Assert.NotSame(conn, s.Connection);
            Assert.Equal(7, await EchoByteAsync(s, 7, ct));
        }
        await pool.AssertAllReturnedAsync();
    }

    [Fact]
    public async Task AConnectionWithAnOpenStreamIsNotIdle()
    {
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        var time = new FakeTimeProvider();
        await using var a = TestHosts.Create(net, configure: o => o with { IdleConnectionTimeout = TimeSpan.FromMilliseconds(200), Time = time });
        await using var b = TestHosts.Create(net);
        b.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        await b.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        var conn = await a.DialAsync(TestHosts.Dialable(b), ct);
        await conn.Identified.Within();
        await RemoteIdentifiedAsync(b, a);
        await using (var s = await conn.OpenStreamAsync(HostTests.EchoProtocol, ct))
        {
            for (var i = 0; i < 10; i++)
            {
                time.Advance(TimeSpan.FromMilliseconds(100)); // 1 s in all, five timeouts' worth
                Assert.Equal(TimeSpan.Zero, conn.IdleTime);
                Assert.Equal((byte)i, await EchoByteAsync(s, (byte)i, ct));
            }
            Assert.True(conn.AcceptsNewStreams);
            await s.Output.CompleteAsync();
        }
        await WaitForNoStreamsAsync(conn);
        Assert.False(conn.IsClosed);
        time.Advance(TimeSpan.FromMilliseconds(200));
        await TestHosts.WaitUntilAsync(() => conn.IsClosed, "closing the connection once its stream ended");
    }

    [Fact]
    public async Task AtTheLimitTheIdlestConnectionMakesRoomAndABusyOneIsKept()
    {
        var net = new MemoryNetwork();
        var ct = TestHosts.Token();
        var time = new FakeTimeProvider();
        await using var server = TestHosts.Create(net, configure: o => o with { MaxConnections = 2, IdleConnectionTimeout = Timeout.InfiniteTimeSpan, Time = time });
        server.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        await server.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        await using var idle = TestHosts.Create(net);
        await using var busy = TestHosts.Create(net);
        await using var late = TestHosts.Create(net);

        var idleConn = await idle.DialAsync(TestHosts.Dialable(server), ct);
        await idleConn.Identified.Within();
        var busyConn = await busy.DialAsync(TestHosts.Dialable(server), ct);
        await using var held = await busyConn.OpenStreamAsync(HostTests.EchoProtocol, ct);
        await TestHosts.WaitUntilAsync(() => server.Connections.Count == 2, "the server holding both connections");
        await RemoteIdentifiedAsync(server, idle);
        var idleOnServer = server.Connections.Single(c => c.RemotePeer == idle.PeerId);
        await WaitForNoStreamsAsync(idleOnServer);
        time.Advance(TimeSpan.FromSeconds(1.2));
        Assert.Equal(TimeSpan.FromSeconds(1.2), idleOnServer.IdleTime);
        Assert.Equal(TimeSpan.Zero, server.Connections.Single(c => c.RemotePeer == busy.PeerId).IdleTime);

        await using var s = await late.NewStreamAsync(TestHosts.Dialable(server), [HostTests.EchoProtocol], ct);
        Assert.Equal(5, await EchoByteAsync(s, 5, ct));
        await TestHosts.WaitUntilAsync(() => idleConn.IsClosed, "the idle connection making room");
        Assert.Equal(9, await EchoByteAsync(held, 9, ct));
        Assert.False(busyConn.IsClosed);
        Assert.True(server.Connections.Count <= 2);
    }

    [Fact]
    public async Task AtTheLimitWithEveryConnectionBusyAnInboundOneIsRefused()
    {
        var net = new MemoryNetwork();
        var log = new LogSink();
        var ct = TestHosts.Token();
        var time = new FakeTimeProvider();
        await using var server = TestHosts.Create(net, log: log, configure: o => o with { MaxConnections = 1, Time = time });
        server.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        await server.StartAsync([Multiaddr.Parse("/memory/0")], ct);
        await using var first = TestHosts.Create(net);
        await using var second = TestHosts.Create(net);

        var conn = await first.DialAsync(TestHosts.Dialable(server), ct);
        await using var held = await conn.OpenStreamAsync(HostTests.EchoProtocol, ct);
        time.Advance(TimeSpan.FromSeconds(1.2)); // old enough to be trimmed, were it idle

        var e = await Assert.ThrowsAnyAsync<P2PException>(() => second.NewStreamAsync(TestHosts.Dialable(server), [HostTests.EchoProtocol], ct));
        Assert.Equal(P2PErrorCode.ConnectionClosed, e.P2PCode); // the server hangs up before the handshake
        await TestHosts.WaitUntilAsync(() => log.Lines.Any(l => l.Contains("refused") || l.Contains("connection limit")), "a log line for the refusal");
        Assert.Equal(3, await EchoByteAsync(held, 3, ct));
        Assert.Single(server.Connections);
    }
}
