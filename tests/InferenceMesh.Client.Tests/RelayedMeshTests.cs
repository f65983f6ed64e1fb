using System.Diagnostics;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Relay;
using InferenceMesh.Tests.Shared;
using Xunit.Abstractions;

namespace InferenceMesh.Client.Tests;

/// <summary>
/// A mesh on loopback TCP whose servers say they are private: they reserve on the bootstrap node, which relays, and
/// announce only <c>/p2p-circuit</c> addresses; the client reaches them through the relay (or directly once DCUtR punched).
/// </summary>
public sealed class RelayedMeshTests(ITestOutputHelper output)
{
    private static readonly GenerationOptions Reference = new(Temperature: 0f, MaxPositions: 256);
    private const string Prompt = "Once upon a time";

    private sealed class Mesh : IAsyncDisposable
    {
        private readonly List<MeshNode> _nodes = [];

        public MeshNode Relay { get; private set; } = null!;
        public RelayService Service => Relay.Peer.RelayService!;
        public IReadOnlyList<MeshNode> Servers => _nodes;
        public Multiaddr RelayAddress => Relay.ListenAddresses[0].WithPeerId(Relay.PeerId);

        public static async Task<Mesh> StartAsync(bool isPrivate, bool holePunching)
        {
            var mesh = new Mesh();
            mesh.Relay = await MeshNode.StartAsync(Options() with { Relay = new RelayServiceOptions() });
            foreach (var blocks in new[] { new BlockRange(0, 2), new BlockRange(2, 5) })
                mesh._nodes.Add(await MeshNode.StartAsync(Options() with
                {
                    ModelDirectory = MeshModels.Stories260KPerBlock, Blocks = blocks, Bootstrap = [mesh.RelayAddress],
                    Private = isPrivate, HolePunching = holePunching,
                }));
            return mesh;
        }

        private static MeshNodeOptions Options() => new() { Listen = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], Executor = ExecutorKind.Ort };

        public Task<MeshClient> ClientAsync(bool listen = false) => MeshClient.ConnectAsync(new MeshClientOptions
        {
            Bootstrap = [RelayAddress], ModelDirectory = MeshModels.Stories260KPerBlock, ListenAddresses = listen ? [Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")] : [],
        });

        public async ValueTask DisposeAsync()
        {
            foreach (var node in _nodes) await node.DisposeAsync();
            await Relay.DisposeAsync();
        }
    }

    /// <summary>Completes the reference prompt; returns the result and the time to the first generated token.</summary>
    private static async Task<(GenerationResult Result, TimeSpan FirstToken)> GenerateAsync(MeshClient client)
    {
        var clock = Stopwatch.StartNew();
        var pieces = 0;
        var firstToken = TimeSpan.Zero;
        var result = await client.CompleteAsync(Prompt, Reference, piece =>
        {
            if (++pieces == 2) firstToken = clock.Elapsed;
        });
        return (result, firstToken);
    }

    private static async Task<IReadOnlyDictionary<string, double>> ScrapeAsync(MeshNode node)
    {
        using var text = new MemoryStream();
        await node.Metrics!.Registry.CollectAndExportAsTextAsync(text);
        return PrometheusText.Parse(System.Text.Encoding.UTF8.GetString(text.ToArray()));
    }

    [Fact]
    public async Task PrivateServersReachedOnlyThroughTheRelayPrintTheReferenceText()
    {
        await using var mesh = await Mesh.StartAsync(isPrivate: true, holePunching: false);
        Assert.All(mesh.Servers, s => Assert.All(s.AdvertisedAddresses, a => Assert.True(CircuitRelayClient.IsCircuit(a), $"{a} is not relayed")));
        await using var client = await mesh.ClientAsync();

        var before = mesh.Service.BytesRelayed;
        var (result, firstToken) = await GenerateAsync(client);

        Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
        Assert.Equal(mesh.Servers.Select(s => s.PeerId.ToString()), result.Route.Select(h => h.PeerId));
        var swarm = await client.GetSwarmAsync();
        Assert.True(swarm.Peers.All(p => p.Connection == PeerConnection.Relayed), string.Join(", ", swarm.Peers.Select(p => p.Connection)));
        var relayed = mesh.Service.BytesRelayed - before;
        Assert.True(relayed > 0);
        // The relay serves no model and still exports its relay figures; a private server counts its relayed connections.
        Assert.True((await ScrapeAsync(mesh.Relay))["inferencemesh_relay_bytes_total"] >= before + relayed);
        Assert.True((await ScrapeAsync(mesh.Servers[0]))["inferencemesh_node_connections{path=\"relayed\"}"] >= 1);
        output.WriteLine($"relayed: {result.GeneratedTokens} tokens, {relayed} bytes through the relay = {relayed / (double)result.GeneratedTokens:F0} B/token; first token after {firstToken.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task PrivateServersArePunchedThroughAndTheClientsHopsRunDirect()
    {
        await using var mesh = await Mesh.StartAsync(isPrivate: true, holePunching: true);
        await using var client = await mesh.ClientAsync();
        var (first, _) = await GenerateAsync(client);
        Assert.Equal(TestModels.Stories260KReferenceText, first.Text);

        await Poll.UntilAsync(async () => (await client.GetSwarmAsync()).Peers.All(p => p.Connection == PeerConnection.Direct),
            "the client's connections to both private servers to become direct", seconds: 20, intervalMs: 50);
        var before = mesh.Service.BytesRelayed;
        var (second, firstToken) = await GenerateAsync(client);

        Assert.Equal(TestModels.Stories260KReferenceText, second.Text);
        // The client's own hops now run direct; the first server's stream to the second, opened (and kept) on the relayed
        // connection during the first generation, still goes through the relay: DCUtR does not move open streams.
        var relayed = mesh.Service.BytesRelayed - before;
        Assert.True(relayed < first.GeneratedTokens * 2052 / 2, $"{relayed} bytes went through the relay");
        output.WriteLine($"after DCUtR: first token after {firstToken.TotalMilliseconds:F0} ms, {relayed} bytes through the relay ({relayed / (double)second.GeneratedTokens:F0} B/token)");
    }

    [Fact]
    public async Task AListeningClientIsPunchedBeforeItsFirstGenerationAndEveryHopOfItRunsDirect()
    {
        await using var mesh = await Mesh.StartAsync(isPrivate: true, holePunching: true);
        await using var client = await mesh.ClientAsync(listen: true);
        var (result, firstToken) = await GenerateAsync(client);

        Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
        Assert.Equal(mesh.Servers.Select(s => s.PeerId.ToString()), result.Route.Select(h => h.PeerId));
        Assert.All(result.Route, h => Assert.Equal(PeerConnection.Direct, h.Connection));
        output.WriteLine($"listening client: first token after {firstToken.TotalMilliseconds:F0} ms");
    }

    [Fact]
    public async Task DirectMeshForComparisonPrintsTheReferenceTextWithoutTheRelay()
    {
        await using var mesh = await Mesh.StartAsync(isPrivate: false, holePunching: false);
        await using var client = await mesh.ClientAsync();
        var (result, firstToken) = await GenerateAsync(client);

        Assert.Equal(TestModels.Stories260KReferenceText, result.Text);
        Assert.Equal(0, mesh.Service.BytesRelayed);
        output.WriteLine($"direct: first token after {firstToken.TotalMilliseconds:F0} ms");
    }
}
