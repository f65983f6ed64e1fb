using System.IO.Pipelines;
using BenchmarkDotNet.Attributes;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// The mesh's overhead per hop without compute: one step through a real <see cref="StageServer"/> whose stage
/// returns its input, over in-memory pipes (framing, MessagePack, session queue, reply) and over a real libp2p
/// connection on loopback (TCP, Noise, Yamux) between two hosts in this process.
/// </summary>
[MemoryDiagnoser]
public class HopBenchmarks
{
    [Params("memory", "libp2p")]
    public string Transport { get; set; } = "memory";

    private StageServer _server = null!;
    private Libp2pHost? _serverHost;
    private Libp2pHost? _clientHost;
    private StageChannel _client = null!;
    private Step _step = null!;
    private ulong _next;

    [Params(64, 4096)]
    public int Width { get; set; }

    [GlobalSetup]
    public async Task Setup()
    {
        var stage = new StageDescriptor(StageKind.Blocks, new BlockRange(0, 1), "echo", "", "in", "out", [], [], [], []);
        var manifest = new Manifest(1, "echo", 1, new ModelConfig(Width, Width, 1, 1, 1, 512, 4096, 1e-5f, 1e4f), "", null, [stage]);
        _server = new StageServer(new ServedSpan(manifest, [new EchoExecutor(stage)]), new NodeOptions(), new NoConnector());
        if (Transport == "memory")
        {
            var toServer = new Pipe();
            var toClient = new Pipe();
            _ = _server.ServeAsync(new StageChannel(new Duplex(toServer.Reader, toClient.Writer)));
            _client = new StageChannel(new Duplex(toClient.Reader, toServer.Writer));
        }
        else
        {
            _serverHost = new Libp2pHost(new Libp2pHostOptions { Identity = Ed25519KeyPair.Generate() });
            _clientHost = new Libp2pHost(new Libp2pHostOptions { Identity = Ed25519KeyPair.Generate() });
            StageHosting.Serve(_serverHost, _server, StageHosting.Connector(_serverHost));
            await _serverHost.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")]);
            await _clientHost.StartAsync([]);
            _client = await StageHosting.Connector(_clientHost).ConnectAsync(_serverHost.PeerId.ToString(), _serverHost.ListenAddresses.Select(a => a.ToString()).ToList(), CancellationToken.None);
        }
        await _client.SendAsync(new OpenSession(1, "s", manifest.ModelId, new BlockRange(0, 1), 4096));
        await _client.ReceiveAsync();
        _step = new Step(0, "s", 0, TensorData.FromFloats([1, 1, Width], new float[Width]), []);
    }

    [Benchmark]
    public async Task<StageMessage?> StepRoundTrip()
    {
        await _client.SendAsync(_step with { StepId = ++_next });
        var reply = await _client.ReceiveAsync();
        (reply as StepResult)?.Activation.Dispose();
        return reply;
    }

    [GlobalCleanup]
    public async Task Cleanup()
    {
        await _client.DisposeAsync();
        await _server.DisposeAsync();
        if (_clientHost is not null) await _clientHost.DisposeAsync();
        if (_serverHost is not null) await _serverHost.DisposeAsync();
    }

    private sealed class EchoExecutor(StageDescriptor stage) : IStageExecutor
    {
        public StageDescriptor Stage => stage;
        public TensorData Run(string sessionId, TensorData activation, int startPosition) => activation;
        public int CachedLength(string sessionId) => 0;
        public void CloseSession(string sessionId) { }
        public void Dispose() { }
    }

    private sealed class NoConnector : IStageConnector
    {
        public ValueTask<StageChannel> ConnectAsync(string peerId, IReadOnlyList<string> addresses, CancellationToken cancellation) =>
            throw new InvalidOperationException("the echo server never pushes");
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
