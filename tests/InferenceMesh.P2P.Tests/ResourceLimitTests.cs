using System.Net;
using System.Net.Sockets;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Muxing;

namespace InferenceMesh.P2P.Tests;

/// <summary>
/// The host's resource scopes (<see cref="Libp2pResourceLimits"/>) on loopback TCP: each limit refuses or closes
/// the newcomer with a log line and a count in <see cref="Libp2pHost.Usage"/>, and what was established keeps working.
/// Attacking sockets bind 127.0.1.x, another /24 than the honest peers' 127.0.0.1.
/// </summary>
public class ResourceLimitTests
{
    private static readonly Multiaddr Loopback = Multiaddr.Parse("/ip4/127.0.0.1/tcp/0");

    private static async Task<Socket> ConnectFromAsync(IPAddress source, Libp2pHost host, CancellationToken ct)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(source, 0));
        await socket.ConnectAsync(host.ListenAddresses[0].TryGetTcpEndPoint()!, ct);
        return socket;
    }

    private static async Task EchoAsync(Libp2pHost client, Libp2pHost server, CancellationToken ct)
    {
        await using var s = await client.NewStreamAsync(TestHosts.Dialable(server), [HostTests.EchoProtocol], ct);
        var reading = HostTests.ReadAllAsync(s.Input, ct);
        await s.Output.WriteAsync(new byte[] { 7, 8, 9 }, ct);
        await s.Output.CompleteAsync();
        Assert.Equal(new byte[] { 7, 8, 9 }, await reading.Within());
    }

    [Fact]
    public async Task IdleSocketsBeyondTheSubnetBudgetAreRefusedWhileAPeerFromAnotherSubnetStillConnects()
    {
        var ct = TestHosts.Token(30);
        var log = new LogSink();
        await using var server = TestHosts.Create(log: log, configure: o => o with
        {
            Limits = new Libp2pResourceLimits { MaxPendingInboundPerIp = 3, MaxPendingInboundPerSubnet = 5, MaxPendingInbound = 64 },
        });
        server.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        await server.StartAsync([Loopback], ct);
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < 4; i++)
                for (var ip = 1; ip <= 3; ip++)
                    sockets.Add(await ConnectFromAsync(IPAddress.Parse($"127.0.1.{ip}"), server, ct));
            await TestHosts.WaitUntilAsync(() => server.Usage.Hits(Libp2pLimit.PendingInboundPerIp) + server.Usage.Hits(Libp2pLimit.PendingInboundPerSubnet) == 7,
                "7 of 12 idle sockets refused");
            Assert.Equal(5, server.Usage.PendingInbound);
            Assert.Contains(log.Lines, l => l.Contains("limit PendingInboundPerSubnet hit") && l.Contains("127.0.1."));

            await using var honest = TestHosts.Create();
            await EchoAsync(honest, server, ct);
        }
        finally
        {
            foreach (var s in sockets) s.Dispose();
        }
        await TestHosts.WaitUntilAsync(() => server.Usage.PendingInbound == 0, "the pending count back to zero");
    }

    [Fact]
    public async Task ASocketThatNeverCompletesTheUpgradeIsClosedAtTheHandshakeDeadline()
    {
        var ct = TestHosts.Token(30);
        await using var server = TestHosts.Create(configure: o => o with { HandshakeTimeout = TimeSpan.FromMilliseconds(300) });
        await server.StartAsync([Loopback], ct);
        using var socket = await ConnectFromAsync(IPAddress.Parse("127.0.1.9"), server, ct);
        // Multistream's header, then silence: a half-open upgrade.
        await socket.SendAsync("\u0013/multistream/1.0.0\n"u8.ToArray(), ct);
        var buffer = new byte[256];
        while (await socket.ReceiveAsync(buffer, ct) > 0)
        {
        }
        // The server closes the socket and counts the hit on its own task: the client can see the close first.
        await TestHosts.WaitUntilAsync(() => server.Usage.Hits(Libp2pLimit.UpgradeTimeout) == 1, "the upgrade timeout counted");
        await TestHosts.WaitUntilAsync(() => server.Usage.PendingInbound == 0 && server.Usage.ConnectionMemory == 0, "the half-open connection's budgets released");
        Assert.Equal(1, server.Usage.Hits(Libp2pLimit.UpgradeTimeout));
    }

    [Fact]
    public async Task AnInboundConnectionThatOpensNoStreamIsClosedAfterTheFirstStreamDeadline()
    {
        var ct = TestHosts.Token(30);
        var log = new LogSink();
        await using var server = TestHosts.Create(log: log, configure: o => o with { Limits = new Libp2pResourceLimits { FirstStreamTimeout = TimeSpan.FromMilliseconds(300) } });
        await using var quiet = TestHosts.Create(configure: o => o with { AutoIdentify = false });
        await server.StartAsync([Loopback], ct);
        var conn = await quiet.DialAsync(TestHosts.Dialable(server), ct);
        await conn.Completion.ContinueWith(_ => { }, TaskScheduler.Default).Within();
        Assert.Equal(1, server.Usage.Hits(Libp2pLimit.FirstStreamTimeout));
        Assert.Contains(log.Lines, l => l.Contains("no stream opened within 0.3 s"));
    }

    [Fact]
    public async Task APeerBeyondItsConnectionBudgetIsRefusedAndItsEarlierConnectionsKeepWorking()
    {
        var ct = TestHosts.Token(30);
        await using var server = TestHosts.Create(configure: o => o with { Limits = new Libp2pResourceLimits { MaxConnectionsPerPeer = 2 } });
        server.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        await using var client = TestHosts.Create();
        await server.StartAsync([Loopback], ct);
        var bare = server.ListenAddresses[0];
        var first = await client.DialAsync(bare, ct);
        await client.DialAsync(bare, ct);
        await TestHosts.WaitUntilAsync(() => server.Connections.Count == 2, "two connections at the server");
        var third = await client.DialAsync(bare, ct);
        await third.Completion.ContinueWith(_ => { }, TaskScheduler.Default).Within();
        Assert.Equal(1, server.Usage.Hits(Libp2pLimit.ConnectionsPerPeer));
        await using var s = await first.OpenStreamAsync(HostTests.EchoProtocol, ct);
        await s.Output.WriteAsync(new byte[] { 1 }, ct);
        await s.Output.CompleteAsync();
        Assert.Equal(new byte[] { 1 }, await HostTests.ReadAllAsync(s.Input, ct).Within());
    }

    [Fact]
    public async Task StreamsBeyondTheProtocolAndConnectionBudgetsAreResetAndCounted()
    {
        var ct = TestHosts.Token(30);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = TestHosts.Create(
            yamux: new YamuxOptions { MaxConcurrentStreams = 6 },
            configure: o => o with { Limits = new Libp2pResourceLimits { MaxInboundStreamsPerProtocol = 2 } });
        server.SetHandler(HostTests.EchoProtocol, async (s, c) => await release.Task.WaitAsync(c));
        await using var client = TestHosts.Create(configure: o => o with { AutoIdentify = false });
        await server.StartAsync([Loopback], ct);
        var conn = await client.DialAsync(TestHosts.Dialable(server), ct);
        var held = new List<Libp2pStream>();
        for (var i = 0; i < 2; i++)
            held.Add(await conn.OpenStreamAsync(HostTests.EchoProtocol, ct));
        // The reset may reach the opener before or after multistream's answer: only the count is certain.
        var third = conn.OpenStreamAsync(HostTests.EchoProtocol, ct);
        await third.ContinueWith(_ => { }, TaskScheduler.Default).Within();
        if (third.IsCompletedSuccessfully) held.Add(await third);
        await TestHosts.WaitUntilAsync(() => server.Usage.Hits(Libp2pLimit.StreamsPerProtocol) == 1, "the third echo stream reset");
        Assert.Equal(2, server.Usage.InboundStreams(HostTests.EchoProtocol));
        var opening = Enumerable.Range(0, 8).Select(_ => conn.OpenStreamAsync(HostTests.EchoProtocol, ct)).ToList();
        await Task.WhenAll(opening).ContinueWith(_ => { }, TaskScheduler.Default).Within();
        foreach (var t in opening.Where(t => t.IsCompletedSuccessfully))
            held.Add(await t);
        Assert.True(server.Usage.Hits(Libp2pLimit.StreamsPerConnection) > 0, "no stream was refused by the per-connection budget");
        release.SetResult();
        foreach (var s in held) await s.DisposeAsync();
        await TestHosts.WaitUntilAsync(() => server.Usage.InboundStreams(HostTests.EchoProtocol) == 0, "the protocol's streams released");
    }

    [Fact]
    public async Task AConnectionBeyondTheMemoryBudgetIsRefusedAndTheReservationsReturnToZero()
    {
        var ct = TestHosts.Token(30);
        var limits = new Libp2pResourceLimits { MemoryPerConnection = 1000, MaxConnectionMemory = 2000 };
        var server = TestHosts.Create(configure: o => o with { Limits = limits });
        await server.StartAsync([Loopback], ct);
        await using var a = TestHosts.Create();
        await using var b = TestHosts.Create();
        await using var c = TestHosts.Create();
        await a.DialAsync(TestHosts.Dialable(server), ct);
        await b.DialAsync(TestHosts.Dialable(server), ct);
        await TestHosts.WaitUntilAsync(() => server.Connections.Count == 2, "two connections at the server");
        Assert.Equal(2000, server.Usage.ConnectionMemory);
        await Assert.ThrowsAnyAsync<Exception>(async () => await (await c.DialAsync(TestHosts.Dialable(server), ct)).PingAsync(1, ct));
        Assert.Equal(1, server.Usage.Hits(Libp2pLimit.ConnectionMemory));
        await server.DisposeAsync();
        Assert.Equal(0, server.Usage.ConnectionMemory);
    }
}
