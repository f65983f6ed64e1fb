using System.Diagnostics;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Relay;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>Circuit Relay v2 and DCUtR between hosts on loopback TCP.</summary>
public class RelayTests
{
    private const string Loopback = "/ip4/127.0.0.1/tcp/0";

    private static async Task<Libp2pHost> StartAsync(LogSink? log = null, bool holePunching = false)
    {
        var host = TestHosts.Create(log: log, configure: o => o with
        {
            HolePunching = holePunching,
            Transports = [new TcpTransport(reusePort: holePunching)],
        });
        await host.StartAsync([Multiaddr.Parse(Loopback)], TestHosts.Token());
        return host;
    }

    private static async Task<(Libp2pHost Relay, RelayService Service)> StartRelayAsync(RelayServiceOptions? options = null, LogSink? log = null)
    {
        var host = await StartAsync(log);
        return (host, RelayService.Attach(host, options));
    }

    private static async Task<byte[]> EchoThroughAsync(Libp2pConnection conn, int size, CancellationToken ct)
    {
        var stream = await conn.OpenStreamAsync(HostTests.EchoProtocol, ct);
        var data = new byte[size];
        Random.Shared.NextBytes(data);
        var reading = HostTests.ReadAllAsync(stream.Input, ct);
        await stream.Output.WriteAsync(data, ct);
        await stream.Output.CompleteAsync();
        var back = await reading;
        await stream.DisposeAsync();
        Assert.Equal(data, back);
        return back;
    }

    [Fact]
    public async Task ReservationGivesCircuitAddressesAndAVoucherSignedByTheRelay()
    {
        var ct = TestHosts.Token();
        var (relay, service) = await StartRelayAsync();
        await using var _ = relay;
        await using var b = await StartAsync();

        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);

        Assert.Equal(relay.PeerId, reservation.Relay);
        Assert.Equal(1, service.ReservationCount);
        Assert.True(reservation.Expires > DateTimeOffset.UtcNow.AddMinutes(59));
        Assert.NotNull(reservation.Voucher);
        Assert.Equal(b.PeerId, reservation.Voucher!.Peer);
        var circuit = Assert.Single(reservation.CircuitAddresses);
        Assert.Equal($"{TestHosts.Dialable(relay)}/p2p-circuit/p2p/{b.PeerId}", circuit.ToString());
        Assert.Equal((TestHosts.Dialable(relay), b.PeerId), CircuitRelayClient.Split(circuit));
        Assert.Equal(reservation.CircuitAddresses, b.Relay.CircuitAddresses);
        Assert.Equal(new RelayLimit(TimeSpan.FromMinutes(30), 1UL << 30), reservation.Limit);
    }

    [Fact]
    public async Task RelayedConnectionIsNoiseAndYamuxAndCarriesStreamsBothWays()
    {
        var ct = TestHosts.Token();
        var (relay, service) = await StartRelayAsync();
        await using var _ = relay;
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        b.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);

        var conn = await a.DialAsync(reservation.CircuitAddresses[0], ct);

        Assert.Equal(b.PeerId, conn.RemotePeer);
        Assert.True(conn.IsRelayed);
        Assert.Equal("relayed", conn.Path);
        Assert.NotNull(conn.RelayLimit);
        await EchoThroughAsync(conn, 1 << 20, ct);
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => EchoThroughAsync(conn, 64 * 1024, ct)));
        Assert.NotEmpty(await conn.PingAsync(3, ct));
        Assert.NotNull(conn.MeasuredRtt);
        await TestHosts.WaitUntilAsync(() => b.GetConnection(a.PeerId) is { IsRelayed: true }, "B sees the relayed connection from A");
        Assert.Same(conn, a.GetConnection(b.PeerId));
        Assert.Equal(1, service.CircuitCount);
    }

    [Fact]
    public async Task CircuitOverItsDataLimitIsClosedWithDataLimitReason()
    {
        var ct = TestHosts.Token();
        var (relay, service) = await StartRelayAsync(new RelayServiceOptions { CircuitBytes = 64 * 1024 });
        await using var _ = relay;
        var ended = new TaskCompletionSource<CircuitCloseReason>();
        service.CircuitClosed += (_, _, reason, _) => ended.TrySetResult(reason);
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        b.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);
        var conn = await a.DialAsync(reservation.CircuitAddresses[0], ct);
        Assert.Equal(64UL * 1024, conn.RelayLimit!.Data);

        await Assert.ThrowsAnyAsync<Exception>(() => EchoThroughAsync(conn, 256 * 1024, ct));

        Assert.Equal(CircuitCloseReason.DataLimit, await ended.Task.Within());
        await conn.Completion.ContinueWith(_ => { }).Within();
        Assert.True(conn.IsClosed);
        // The relay itself and B's reservation are unaffected: a fresh circuit works.
        var again = await a.DialAsync(reservation.CircuitAddresses[0], ct);
        await EchoThroughAsync(again, 1024, ct);
    }

    [Fact]
    public async Task CircuitOverItsDurationIsClosedWithDurationLimitReason()
    {
        var ct = TestHosts.Token();
        var (relay, service) = await StartRelayAsync(new RelayServiceOptions { CircuitDuration = TimeSpan.FromSeconds(1) });
        await using var _ = relay;
        var ended = new TaskCompletionSource<CircuitCloseReason>();
        service.CircuitClosed += (_, _, reason, _) => ended.TrySetResult(reason);
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);
        var conn = await a.DialAsync(reservation.CircuitAddresses[0], ct);
        var clock = Stopwatch.StartNew();

        Assert.Equal(CircuitCloseReason.DurationLimit, await ended.Task.Within());
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.5, 5);
        await conn.Completion.ContinueWith(_ => { }).Within();
        Assert.True(conn.IsClosed);
    }

    [Fact]
    public async Task PerPeerCircuitCapAndReservationCapAreEnforcedWithTypedStatuses()
    {
        var ct = TestHosts.Token();
        var (relay, service) = await StartRelayAsync(new RelayServiceOptions { MaxCircuitsPerPeer = 1, MaxReservationsPerIp = 1 });
        await using var _ = relay;
        await using var a = await StartAsync();
        await using var b = await StartAsync();
        await using var c = await StartAsync();
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);

        var refusedReservation = await Assert.ThrowsAsync<RelayException>(() => c.Relay.ReserveAsync(TestHosts.Dialable(relay), ct));
        Assert.Equal(RelayStatus.ReservationRefused, refusedReservation.Status);

        var first = await a.DialAsync(reservation.CircuitAddresses[0], ct);
        var second = await Assert.ThrowsAsync<RelayException>(() => c.DialAsync(reservation.CircuitAddresses[0], ct));
        Assert.Equal(RelayStatus.ResourceLimitExceeded, second.Status);
        Assert.Equal(P2PErrorCode.RelayRefused, second.P2PCode);

        var noReservation = Multiaddr.Parse($"{TestHosts.Dialable(relay)}/p2p-circuit/p2p/{c.PeerId}");
        var third = await Assert.ThrowsAsync<RelayException>(() => a.DialAsync(noReservation, ct));
        Assert.Equal(RelayStatus.NoReservation, third.Status);
        Assert.False(first.IsClosed);
        Assert.NotEmpty(await first.PingAsync(1, ct));
    }

    [Theory]
    [InlineData("garbage", P2PErrorCode.InvalidEncoding)]
    [InlineData("refused", P2PErrorCode.RelayRefused)]
    [InlineData("no-reservation", P2PErrorCode.ProtocolViolation)]
    [InlineData("expired", P2PErrorCode.ProtocolViolation)]
    [InlineData("forged-voucher", P2PErrorCode.PeerIdMismatch)]
    [InlineData("wrong-type", P2PErrorCode.ProtocolViolation)]
    [InlineData("silent", P2PErrorCode.ConnectionClosed)]
    public async Task RelayThatLiesAboutReservationsGivesTypedErrorsAndOtherSessionsGoOn(string lie, P2PErrorCode expected)
    {
        var ct = TestHosts.Token();
        await using var liar = await StartAsync();
        using var stranger = Ed25519KeyPair.Generate();
        liar.SetHandler(CircuitRelayClient.HopProtocolId, async (stream, token) =>
        {
            await LengthPrefixed.ReadAsync(stream.Input, 4096, token);
            var expire = (ulong)DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
            byte[] reply = lie switch
            {
                "garbage" => [0x08, 0xff, 0xff, 0x12, 0x7f, 0x01],
                "refused" => new CircuitMessage(CircuitMessageType.Status) { Status = RelayStatus.ReservationRefused }.Encode(true),
                "no-reservation" => new CircuitMessage(CircuitMessageType.Status) { Status = RelayStatus.Ok }.Encode(true),
                "expired" => new CircuitMessage(CircuitMessageType.Status) { Status = RelayStatus.Ok, HasReservation = true, ReservationExpire = 1000 }.Encode(true),
                "forged-voucher" => new CircuitMessage(CircuitMessageType.Status)
                {
                    Status = RelayStatus.Ok, HasReservation = true, ReservationExpire = expire,
                    Voucher = Reforge(liar.PeerId, stranger),
                }.Encode(true),
                "wrong-type" => new CircuitMessage(CircuitMessageType.Reserve).Encode(true),
                _ => [],
            };
            if (reply.Length > 0)
            {
                LengthPrefixed.Write(stream.Output, reply);
                await stream.Output.FlushAsync(token);
            }
            await stream.Output.CompleteAsync();
        });
        await using var b = await StartAsync();
        await using var other = await StartAsync();
        var healthy = await b.DialAsync(TestHosts.Dialable(other), ct);

        var error = await Assert.ThrowsAnyAsync<P2PException>(() => b.Relay.ReserveAsync(TestHosts.Dialable(liar), ct));

        Assert.Equal(expected, error.P2PCode);
        Assert.Empty(b.Relay.Reservations);
        Assert.NotEmpty(await healthy.PingAsync(1, ct));
        Assert.NotEmpty(await b.PingAsync(TestHosts.Dialable(liar), 1, ct));
    }

    /// <summary>A voucher sealed by <paramref name="signer"/> whose payload names <paramref name="relay"/>: the signature verifies, the signer is not the relay.</summary>
    private static byte[] Reforge(PeerId relay, Ed25519KeyPair signer)
    {
        var payload = new Encoding.ProtoWriter();
        payload.WriteBytes(1, relay.Span);
        payload.WriteBytes(2, signer.PeerId.Span);
        payload.WriteVarint(3, 1);
        var body = payload.ToArray();
        var domain = System.Text.Encoding.UTF8.GetBytes(RelayVoucher.Domain);
        var signed = new List<byte> { (byte)domain.Length };
        signed.AddRange(domain);
        signed.AddRange(new byte[] { 2, 0x03, 0x02, (byte)body.Length });
        signed.AddRange(body);
        var envelope = new Encoding.ProtoWriter();
        envelope.WriteBytes(1, signer.PublicKeyProtobuf);
        envelope.WriteBytes(2, new byte[] { 0x03, 0x02 });
        envelope.WriteBytes(3, body);
        envelope.WriteBytes(5, signer.Sign(signed.ToArray()));
        return envelope.ToArray();
    }

    [Fact]
    public void VoucherRoundTripsAndATamperedOneIsRefused()
    {
        using var relay = Ed25519KeyPair.Generate();
        using var peer = Ed25519KeyPair.Generate();
        var voucher = new RelayVoucher(relay.PeerId, peer.PeerId, 1_900_000_000);
        var sealedBytes = voucher.Seal(relay);

        Assert.Equal(voucher, RelayVoucher.Open(sealedBytes));
        sealedBytes[^1] ^= 1;
        Assert.Equal(P2PErrorCode.HandshakeFailed, Assert.Throws<P2PException>(() => RelayVoucher.Open(sealedBytes)).P2PCode);
        Assert.Equal(P2PErrorCode.InvalidEncoding, Assert.Throws<P2PException>(() => RelayVoucher.Open([0x0a, 0x05, 1])).P2PCode);
    }

    [Fact]
    public async Task DcutrUpgradesARelayedConnectionToADirectOneOnLoopback()
    {
        var ct = TestHosts.Token();
        var log = new LogSink();
        var (relay, _) = await StartRelayAsync();
        await using var __ = relay;
        await using var a = await StartAsync(log, holePunching: true);
        await using var b = await StartAsync(log, holePunching: true);
        b.SetHandler(HostTests.EchoProtocol, HostTests.EchoAsync);
        var punched = new TaskCompletionSource<Libp2pConnection?>();
        b.HolePunching!.Finished += (_, conn, _) => punched.TrySetResult(conn);
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);

        var relayed = await a.DialAsync(reservation.CircuitAddresses[0], ct);
        Assert.True(relayed.IsRelayed);
        var direct = await punched.Task.Within();

        Assert.True(direct is { IsRelayed: false }, "punch failed: " + string.Join("\n", log.Lines));
        await TestHosts.WaitUntilAsync(() => a.GetDirectConnection(b.PeerId) is not null, "A sees the direct connection");
        var stream = await a.NewStreamAsync(b.PeerId, [], [HostTests.EchoProtocol], ct);
        Assert.False(stream.Connection.IsRelayed);
        Assert.Equal("direct", stream.Connection.Path);
        await stream.DisposeAsync();
        Assert.Equal(1, b.HolePunching.Succeeded);
        // The relayed connection stays usable for what runs on it.
        Assert.NotEmpty(await relayed.PingAsync(1, ct));
    }

    [Fact]
    public async Task DcutrPeerThatSendsGarbageGivesATypedErrorAndTheRelayedConnectionGoesOn()
    {
        var ct = TestHosts.Token();
        var (relay, _) = await StartRelayAsync();
        await using var __ = relay;
        await using var a = await StartAsync();
        a.SetHandler(DcutrService.ProtocolId, async (stream, token) =>
        {
            await LengthPrefixed.ReadAsync(stream.Input, 4096, token);
            LengthPrefixed.Write(stream.Output, [0x08, 0xAC, 0x02, 0x12, 0x03, 0xff, 0xff]);
            await stream.Output.FlushAsync(token);
        });
        await using var b = await StartAsync(holePunching: true);
        var finished = new TaskCompletionSource<Libp2pConnection?>();
        b.HolePunching!.Finished += (_, conn, _) => finished.TrySetResult(conn);
        var reservation = await b.Relay.ReserveAsync(TestHosts.Dialable(relay), ct);

        var relayed = await a.DialAsync(reservation.CircuitAddresses[0], ct);

        Assert.Null(await finished.Task.Within());
        Assert.Equal(1, b.HolePunching.Failed);
        var error = await Assert.ThrowsAnyAsync<P2PException>(() => b.HolePunching.UpgradeAsync(b.GetConnection(a.PeerId)!, ct));
        Assert.Contains(error.P2PCode, new[] { P2PErrorCode.InvalidEncoding, P2PErrorCode.ProtocolViolation });
        Assert.True(relayed.IsRelayed);
        Assert.NotEmpty(await relayed.PingAsync(2, ct));
    }
}
