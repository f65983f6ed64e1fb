using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests.Dht;

/// <summary>The DHT over real libp2p hosts (Noise, Yamux, multistream) on the in-memory transport and on TCP.</summary>
public sealed class Libp2pKadNetworkTests
{
    private sealed record Node(Libp2pHost Host, KadDht Dht, Ed25519KeyPair Key) : IAsyncDisposable
    {
        public KadPeer Peer => new(Host.PeerId, Host.ListenAddresses);

        public async ValueTask DisposeAsync()
        {
            await Dht.DisposeAsync();
            await Host.DisposeAsync();
            Key.Dispose();
        }
    }

    private static async Task<Node> StartAsync(MemoryNetwork? net, string protocol = KadDhtOptions.MeshProtocolId, DhtMode mode = DhtMode.Server)
    {
        var key = Ed25519KeyPair.Generate();
        var host = TestHosts.Create(net, key: key);
        await host.StartAsync([Multiaddr.Parse(net is null ? "/ip4/127.0.0.1/tcp/0" : "/memory/0")], TestHosts.Token());
        var kad = new Libp2pKadNetwork(host, protocol);
        var dht = new KadDht(host.PeerId, kad, new KadDhtOptions
        {
            ProtocolId = protocol,
            Mode = mode,
            RequestTimeout = TimeSpan.FromSeconds(10),
            Validators = RecordValidators.WithDefaults().Add("mesh", new OpaqueRecordValidator()),
        });
        kad.Attach(dht);
        return new Node(host, dht, key);
    }

    [Theory]
    [InlineData(true, KadDhtOptions.MeshProtocolId)]
    [InlineData(false, KadDhtOptions.IpfsProtocolId)]
    public async Task NodesBootstrapFindEachOtherAndShareRecords(bool memory, string protocol)
    {
        var net = memory ? new MemoryNetwork() : null;
        var nodes = new List<Node>();
        try
        {
            for (var i = 0; i < 5; i++) nodes.Add(await StartAsync(net, protocol));
            for (var i = 1; i < nodes.Count; i++)
                await nodes[i].Dht.BootstrapAsync([nodes[0].Peer], TestHosts.Token()).Within(30);
            // a second round lets early joiners learn of later ones
            foreach (var n in nodes) await n.Dht.RefreshAsync(TestHosts.Token()).Within(30);
            foreach (var n in nodes) n.Dht.Start(); // background maintenance runs beside the calls below and stops on dispose

            var found = await nodes[4].Dht.FindPeerAsync(nodes[1].Host.PeerId, TestHosts.Token()).Within();
            Assert.NotNull(found.Peer);
            Assert.Contains(nodes[1].Host.ListenAddresses[0], found.Peer!.Addresses);

            var pk = PublicKeyRecordValidator.KeyFor(nodes[2].Host.PeerId);
            Assert.True(await nodes[2].Dht.PutValueAsync(pk, nodes[2].Key.PublicKeyProtobuf, cancellationToken: TestHosts.Token()).Within() >= 3);
            var got = await nodes[3].Dht.GetValueAsync(pk, TestHosts.Token()).Within();
            Assert.Equal(nodes[2].Key.PublicKeyProtobuf, got.Value);

            var custom = "/mesh/greeting"u8.ToArray();
            await nodes[1].Dht.PutValueAsync(custom, "hi"u8.ToArray(), cancellationToken: TestHosts.Token()).Within();
            Assert.Equal("hi"u8.ToArray(), (await nodes[4].Dht.GetValueAsync(custom, TestHosts.Token()).Within()).Value);

            var cid = new byte[] { 1, 0x55, 0x12, 0x20, 7, 7, 7 };
            Assert.True(await nodes[3].Dht.ProvideAsync(cid, TestHosts.Token()).Within() >= 3);
            var providers = await nodes[0].Dht.FindProvidersAsync(cid, 5, TestHosts.Token()).Within();
            Assert.Equal(nodes[3].Host.PeerId, Assert.Single(providers.Providers).Id);
        }
        finally
        {
            foreach (var n in nodes) await n.DisposeAsync();
        }
    }

    [Fact]
    public async Task OversizedFrameResetsTheStreamIsCountedAndTheNodeKeepsServing()
    {
        var net = new MemoryNetwork();
        await using var a = await StartAsync(net);
        await using var b = await StartAsync(net);
        var addr = TestHosts.Dialable(a.Host);
        var stream = await b.Host.NewStreamAsync(addr, [KadDhtOptions.MeshProtocolId], TestHosts.Token()).Within();
        // claim an 8 MiB message and send a few bytes of it
        var prefix = new byte[UnsignedVarint.MaxBytes];
        var n = UnsignedVarint.Write(prefix, 8 * 1024 * 1024);
        await stream.Output.WriteAsync(prefix.AsMemory(0, n));
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            // The node may reset the stream as soon as it has read the length, before these bytes go out: that is the refusal too.
            await stream.Output.WriteAsync(new byte[100]);
            var r = await stream.Input.ReadAsync(TestHosts.Token());
            if (r.IsCompleted && r.Buffer.IsEmpty) throw new EndOfStreamException();
        });
        await stream.DisposeAsync();
        Assert.Equal(1, a.Dht.Metrics.OversizedMessages);
        // the connection and the DHT still work
        Assert.True(await b.Dht.PingAsync(a.Peer, TestHosts.Token()).Within());
    }

    [Fact]
    public async Task ClientModeRegistersNoHandler()
    {
        var net = new MemoryNetwork();
        await using var server = await StartAsync(net);
        await using var client = await StartAsync(net, mode: DhtMode.Client);
        Assert.Contains(KadDhtOptions.MeshProtocolId, server.Host.Protocols);
        Assert.DoesNotContain(KadDhtOptions.MeshProtocolId, client.Host.Protocols);
        await client.Dht.BootstrapAsync([server.Peer], TestHosts.Token()).Within();
        Assert.False(server.Dht.RoutingTable.Contains(client.Host.PeerId));
    }

    /// <summary>A loopback TCP port nothing listens on now (bound, then released).</summary>
    private static int FreeLoopbackPort()
    {
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    [Fact]
    public async Task BootstrapRetriesASeedThatStartsListeningAMomentLater()
    {
        var port = FreeLoopbackPort();
        var seedKey = Ed25519KeyPair.Generate();
        await using var seedHost = TestHosts.Create(key: seedKey);
        var seedKad = new Libp2pKadNetwork(seedHost);
        await using var seedDht = new KadDht(seedHost.PeerId, seedKad);
        seedKad.Attach(seedDht);
        await using var joiner = await StartAsync(null);
        var seed = new KadPeer(seedHost.PeerId, [Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{port}")]);

        var join = joiner.Dht.BootstrapAsync([seed], TestHosts.Token());
        // The event itself: the first ping refused (nothing listens yet); the join must then be waiting to try again.
        await TestHosts.WaitUntilAsync(() => joiner.Dht.Metrics.RequestFailures >= 1, "the first bootstrap ping to fail");
        Assert.False(join.IsCompleted, "the first ping was refused; the joiner should be waiting to try again");
        await seedHost.StartAsync([seed.Addresses[0]], TestHosts.Token());
        await join.Within(30);
        Assert.Equal(1, joiner.Dht.RoutingTable.Count);
        seedKey.Dispose();
    }

    [Fact]
    public async Task BootstrapGivesUpAfterTheConfiguredAttempts()
    {
        var port = FreeLoopbackPort();
        var key = Ed25519KeyPair.Generate();
        await using var host = TestHosts.Create(key: key);
        await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], TestHosts.Token());
        var kad = new Libp2pKadNetwork(host);
        await using var dht = new KadDht(host.PeerId, kad, new KadDhtOptions { BootstrapAttempts = 2, BootstrapRetryDelay = TimeSpan.FromMilliseconds(50) });
        kad.Attach(dht);
        using var other = Ed25519KeyPair.Generate();
        var dead = new KadPeer(other.PeerId, [Multiaddr.Parse($"/ip4/127.0.0.1/tcp/{port}")]);

        var error = await Assert.ThrowsAsync<DhtException>(() => dht.BootstrapAsync([dead], TestHosts.Token()).Within(30));
        Assert.Equal(DhtErrorCode.NoPeers, error.DhtCode);
        Assert.Equal(2, dht.Metrics.RequestFailures);
        key.Dispose();
    }
}
