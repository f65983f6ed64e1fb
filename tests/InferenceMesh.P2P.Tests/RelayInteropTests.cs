using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Relay;
using Xunit.Abstractions;

namespace InferenceMesh.P2P.Tests;

/// <summary>
/// Circuit Relay v2 between our hosts and js-libp2p (@libp2p/circuit-relay-v2, tests/interop/relay-peer.mjs) on
/// loopback, both ways: our private host reserves on a js relay and a js peer pings it through the circuit; a js
/// private peer reserves on our relay and our host pings it through the circuit.
/// </summary>
public sealed class RelayInteropTests(ITestOutputHelper output)
{
    [Fact]
    public async Task OurPrivateHostReservesOnAJsRelayAndAJsPeerPingsItThroughTheCircuit()
    {
        var ct = TestHosts.Token(60);
        await using var relay = JsPeer.Start(new { mode = "relay" }, "relay-peer.mjs");
        var ready = await relay.WaitAsync("ready");
        var relayAddress = Multiaddr.Parse(ready.GetProperty("addrs").EnumerateArray().Select(a => a.GetString()!).First(a => a.Contains("/tcp/", StringComparison.Ordinal)));

        await using var host = TestHosts.Create();
        await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var reservation = await host.Relay.ReserveAsync(relayAddress, ct);
        Assert.Equal(relayAddress.PeerId, reservation.Relay);
        var circuit = Assert.Single(reservation.CircuitAddresses);
        Assert.Contains("/p2p-circuit/p2p/" + host.PeerId, circuit.ToString());

        await using var dialer = JsPeer.Start(new { mode = "dial", target = circuit.ToString() }, "relay-peer.mjs");
        var pinged = await dialer.WaitAsync("pinged");
        Assert.True(pinged.GetProperty("limited").GetBoolean(), "the js dialer's connection should be a limited (relayed) one");
        Assert.Contains("/p2p-circuit", pinged.GetProperty("remoteAddr").GetString());
        output.WriteLine($"js dialer pinged our host through the js relay in {pinged.GetProperty("ms").GetDouble()} ms over {pinged.GetProperty("remoteAddr").GetString()}");
    }

    [Fact]
    public async Task AJsPrivatePeerReservesOnOurRelayAndOurHostPingsItThroughTheCircuit()
    {
        var ct = TestHosts.Token(60);
        await using var relayHost = TestHosts.Create();
        await relayHost.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var service = RelayService.Attach(relayHost);

        await using var js = JsPeer.Start(new { mode = "private", relay = TestHosts.Dialable(relayHost).ToString() }, "relay-peer.mjs");
        var reserved = await js.WaitAsync("reserved");
        Assert.Equal(1, service.ReservationCount);
        var circuit = Multiaddr.Parse(reserved.GetProperty("addrs").EnumerateArray().Select(a => a.GetString()!).First());
        Assert.StartsWith(TestHosts.Dialable(relayHost) + "/p2p-circuit", circuit.ToString());

        await using var dialer = TestHosts.Create();
        await dialer.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var rtts = await dialer.PingAsync(circuit, 3, ct);
        Assert.Equal(3, rtts.Count);
        Assert.True(service.CircuitCount >= 1 || service.BytesRelayed > 0, "the ping should have crossed our relay");
        output.WriteLine($"our host pinged the js private peer through our relay: {string.Join(", ", rtts.Select(r => $"{r.TotalMilliseconds:F1} ms"))}; {service.BytesRelayed} bytes relayed");
    }
}
