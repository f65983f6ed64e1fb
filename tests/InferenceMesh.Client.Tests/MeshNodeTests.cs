using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Transport;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>The library's composition in one process: <see cref="MeshNode"/>s and a <see cref="MeshClient"/> over libp2p on the in-memory transport.</summary>
public sealed class MeshNodeTests
{
    private static readonly GenerationOptions Reference = new(Temperature: 0f, MaxPositions: 256);

    private sealed class Mesh : IAsyncDisposable
    {
        private readonly MemoryNetwork _network = new();
        private readonly List<MeshNode> _nodes = [];

        public MeshNode Bootstrap { get; private set; } = null!;
        public IReadOnlyList<MeshNode> Nodes => _nodes;
        public Multiaddr BootstrapAddress => Bootstrap.ListenAddresses[0].WithPeerId(Bootstrap.PeerId);
        public IReadOnlyList<ITransport> Transports => [new MemoryTransport(_network)];

        public static async Task<Mesh> StartAsync()
        {
            var mesh = new Mesh();
            mesh.Bootstrap = await MeshNode.StartAsync(mesh.Options());
            return mesh;
        }

        public MeshNodeOptions Options() => new() { Listen = [Multiaddr.Parse("/memory/0")], Transports = Transports, Executor = ExecutorKind.Ort };

        public async Task<MeshNode> AddAsync(MeshNodeOptions options)
        {
            var node = await MeshNode.StartAsync(options with { ModelDirectory = MeshModels.Stories260KPerBlock, Bootstrap = [BootstrapAddress] });
            _nodes.Add(node);
            return node;
        }

        public Task<MeshClient> ClientAsync() => MeshClient.ConnectAsync(new MeshClientOptions
        {
            Bootstrap = [BootstrapAddress],
            ModelDirectory = MeshModels.Stories260KPerBlock,
            Transports = Transports,
        });

        public async ValueTask DisposeAsync()
        {
            foreach (var node in _nodes) await node.DisposeAsync();
            await Bootstrap.DisposeAsync();
        }
    }

    [Fact]
    public async Task NodesAndAClientJoinedThroughTheLibraryPrintTheReferenceText()
    {
        await using var mesh = await Mesh.StartAsync();
        var first = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(0, 2) });
        var second = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(2, 5) });
        Assert.Equal("given explicitly", first.Span!.Reason);
        Assert.True(first.Throughput > 0);

        await using var client = await mesh.ClientAsync();
        var result = await client.CompleteAsync("Once upon a time", Reference);
        Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
        Assert.Equal([first.PeerId.ToString(), second.PeerId.ToString()], result.Route.Select(h => h.PeerId));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 5)], result.Route.Select(h => h.Blocks));
        Assert.All(result.Route, h => Assert.True(h.Steps > 0 && h.MeanLatencyMs > 0));
        Assert.True(result.TimeToFirstToken > TimeSpan.Zero && result.TimeToFirstToken < result.Elapsed, $"first token after {result.TimeToFirstToken} of {result.Elapsed}");
    }

    [Fact]
    public async Task SwarmSnapshotShowsEachServerConnectedDirectlyAndADisposedOneOfflineWithoutARoundTrip()
    {
        await using var mesh = await Mesh.StartAsync();
        var first = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(0, 2) });
        var second = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(2, 5) });
        await using var client = await mesh.ClientAsync();

        var swarm = await client.GetSwarmAsync();
        Assert.Equal(client.Manifest.ModelId, swarm.ModelId);
        Assert.Equal([first.PeerId, second.PeerId], swarm.Peers.Select(p => p.Peer));
        Assert.Equal([new BlockRange(0, 2), new BlockRange(2, 5)], swarm.Peers.Select(p => p.Span));
        Assert.Equal([first.Throughput, second.Throughput], swarm.Peers.Select(p => p.Throughput));
        Assert.All(swarm.Peers, p =>
        {
            Assert.Equal(ServerState.Online, p.State);
            Assert.Equal(PeerConnection.Direct, p.Connection);
            Assert.NotNull(p.RoundTripMs);
            Assert.True(p.FreeCacheTokens > 0);
        });
        Assert.Equal([1, 1, 1, 1, 1], swarm.OnlineServersPerBlock);

        await second.DisposeAsync();
        var after = await client.GetSwarmAsync();
        var gone = Assert.Single(after.Peers, p => p.Peer == second.PeerId);
        Assert.Equal(ServerState.Offline, gone.State);
        Assert.Null(gone.RoundTripMs);
        Assert.Equal([1, 1, 0, 0, 0], after.OnlineServersPerBlock);
    }

    [Fact]
    public async Task NodeWithoutBlocksChoosesTheWeakestSpanAndSaysWhy()
    {
        await using var mesh = await Mesh.StartAsync();
        await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(0, 2) });
        var lines = new List<string>();
        var chosen = await mesh.AddAsync(mesh.Options() with { BlockCount = 2, Log = line => { lock (lines) lines.Add(line); } });
        Assert.Equal(new BlockRange(2, 4), chosen.Span!.Blocks);
        Assert.Contains("Petals' rule", chosen.Span.Reason);
        Assert.Contains(lines, l => l.Contains("serving blocks 2:4: Petals' rule"));

        var all = await mesh.AddAsync(mesh.Options());
        Assert.Equal(new BlockRange(0, 5), all.Span!.Blocks);
        Assert.Contains("neither a block range nor a block count", all.Span.Reason);
    }

    [Fact]
    public async Task DisposedNodeAnnouncesItselfOfflineAndLeavesNoSession()
    {
        await using var mesh = await Mesh.StartAsync();
        var node = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(0, 5) });
        await using (var client = await mesh.ClientAsync())
            Assert.Equal(TestModels.Stories260KReferenceText, (await client.CompleteAsync("", Reference)).Text);
        await Poll.UntilAsync(() => node.SessionCount == 0, "the node to process the one-way CloseSession");
        Assert.Equal(0, node.ReservedKvBytes);

        var modelId = node.ModelId!;
        var peerId = node.PeerId;
        await node.DisposeAsync();
        var servers = await mesh.Bootstrap.Peer.Spans.GetServersAsync(modelId, 0);
        Assert.Equal(ServerState.Offline, Assert.Single(servers, s => s.Peer == peerId).State);
    }

    [Fact]
    public async Task ClientNamesTheBootstrapPeerThatDidNotAnswer()
    {
        await using var mesh = await Mesh.StartAsync();
        var address = mesh.BootstrapAddress;
        await mesh.Bootstrap.DisposeAsync();
        var error = await Assert.ThrowsAsync<MeshException>(() => mesh.ClientAsync());
        Assert.Equal(MeshErrorCode.PeersUnreachable, error.Code);
        Assert.Contains(address.ToString(), error.Message);
    }

    [Fact]
    public async Task HostedServiceStartsAndStopsTheNode()
    {
        await using var mesh = await Mesh.StartAsync();
        await using var service = new MeshNodeService(mesh.Options() with { ModelDirectory = MeshModels.Stories260KPerBlock, Bootstrap = [mesh.BootstrapAddress], Blocks = new BlockRange(0, 5) });
        Assert.Null(service.Node);
        await service.StartAsync(CancellationToken.None);
        Assert.NotNull(service.Node);
        await using (var client = await mesh.ClientAsync())
            Assert.Equal(TestModels.Stories260KReferenceText, (await client.CompleteAsync("", Reference)).Text);
        await service.StopAsync(CancellationToken.None);
        Assert.Null(service.Node);
    }

    [Fact]
    public async Task NodeMetricsParseAsPrometheusTextAndCountTheStepsAndStageBytesItRan()
    {
        int port;
        using (var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        }
        var url = new Uri($"http://127.0.0.1:{port}/metrics/");
        await using var mesh = await Mesh.StartAsync();
        var node = await mesh.AddAsync(mesh.Options() with { Blocks = new BlockRange(0, 5), MetricsUrl = url });
        using var http = new HttpClient();
        var before = PrometheusText.Parse(await http.GetStringAsync(url));
        GenerationResult result;
        Protocol.StageTraffic traffic;
        await using (var client = await mesh.ClientAsync())
        {
            result = await client.CompleteAsync("Once upon a time", new GenerationOptions(MaxTokens: 10, Temperature: 0f));
            traffic = client.Traffic;
        }
        // One node serves every block, so each stage byte the client sent is one the node received, and back; the
        // session's closing frame may still be on its way when the first scrape runs.
        var after = before;
        await Poll.UntilAsync(async () =>
        {
            after = PrometheusText.Parse(await http.GetStringAsync(url));
            return after["inferencemesh_node_stage_bytes_received_total"] - before["inferencemesh_node_stage_bytes_received_total"] >= traffic.BytesSent;
        }, "the node to count every byte the client sent", seconds: 5, intervalMs: 50);
        Assert.Equal(traffic.BytesSent, after["inferencemesh_node_stage_bytes_received_total"] - before["inferencemesh_node_stage_bytes_received_total"]);
        Assert.Equal(traffic.BytesReceived, after["inferencemesh_node_stage_bytes_sent_total"] - before["inferencemesh_node_stage_bytes_sent_total"]);
        Assert.True(traffic.BytesSent > (result.PromptTokens + result.GeneratedTokens - 1) * 64 * sizeof(float), $"{traffic.BytesSent} bytes sent");

        Assert.Equal(result.GeneratedTokens, after["inferencemesh_node_steps_total"] - before["inferencemesh_node_steps_total"]);
        Assert.Equal(result.PromptTokens + result.GeneratedTokens - 1, after["inferencemesh_node_positions_total"] - before["inferencemesh_node_positions_total"]);
        Assert.True(after["inferencemesh_node_compute_seconds_total"] > before["inferencemesh_node_compute_seconds_total"]);
        Assert.Equal(node.Throughput, after["inferencemesh_node_throughput_tokens_per_second"], 3);
        Assert.Equal(1L << 30, after["inferencemesh_node_kv_budget_bytes"]);
    }
}
