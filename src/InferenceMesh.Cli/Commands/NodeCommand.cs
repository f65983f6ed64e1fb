using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.Protocol;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh node</c>: runs a peer until SIGINT/SIGTERM. It prints one JSON line
/// <c>{"event":"ready",…}</c> on stdout once it listens, then logs on stderr. With <c>--model</c> it serves
/// block stages over <c>/inferencemesh/stage/1.0.0</c>.
/// </summary>
public static class NodeCommand
{
    /// <summary>Petals' rule over the spans the DHT lists now (an empty swarm gives the first blocks).</summary>
    private static async Task<BlockRange> ChooseSpanAsync(MeshPeer peer, Manifest manifest, int count, CancellationToken cancellation)
    {
        var perBlock = await peer.Spans.ListServersAsync(manifest.ModelId, manifest.BlockCount, cancellation);
        var servers = perBlock.SelectMany(b => b).Where(s => s.State == ServerState.Online).GroupBy(s => s.Peer).Select(g => (g.First().Span, g.First().Throughput));
        return SpanChooser.Choose(manifest.BlockCount, count, servers);
    }

    /// <summary>Tokens per second through the span for one decode step, timed on a scratch session (what the node announces).</summary>
    private static double MeasureThroughput(ServedSpan span)
    {
        var width = span.Manifest.Config?.Dim ?? throw new MeshException(MeshErrorCode.InvalidManifest, "the manifest has no model config");
        var session = $"throughput-{Guid.NewGuid():N}";
        try
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            const int steps = 4;
            for (var position = 0; position < steps; position++)
            {
                var activation = TensorData.FromFloats([1, 1, width], new float[width]);
                foreach (var stage in span.Stages) activation = stage.Run(session, activation, position);
            }
            return steps / Math.Max(watch.Elapsed.TotalSeconds, 1e-6);
        }
        finally
        {
            foreach (var stage in span.Stages) stage.CloseSession(session);
        }
    }

    public static Command Create(ICliConsole console)
    {
        var listen = new Option<string[]>("--listen") { Description = "Multiaddrs to listen on", DefaultValueFactory = _ => ["/ip4/127.0.0.1/tcp/0"], AllowMultipleArgumentsPerToken = true };
        var identity = new Option<string?>("--identity") { Description = "Ed25519 key file (created with mode 0600 if missing); a fresh key when omitted" };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "Peers to join through, as multiaddrs with /p2p/", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var model = new Option<string?>("--model") { Description = "Split model directory (manifest.json) to serve blocks of" };
        var blocks = new Option<string?>("--blocks") { Description = "Blocks to serve, e.g. 0:3 (must fall on stage boundaries)" };
        var numBlocks = new Option<int?>("--num-blocks") { Description = "Serve this many blocks where the swarm is weakest (Petals' rule)" };
        var executor = new Option<string>("--executor") { Description = "What runs the blocks: auto, ort or ilgpu", DefaultValueFactory = _ => "auto" };
        var linkDelay = new Option<string>("--link-delay") { Description = "Emulated one-way delay added to every stage stream this node sends on, e.g. 20ms", DefaultValueFactory = _ => "0" };
        var maxSessions = new Option<int>("--max-sessions") { Description = "Sessions served at once", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per stage run (0: one per core); 1 suits several nodes on one machine", DefaultValueFactory = _ => 1 };
        var kvBudget = new Option<int>("--kv-budget-mb") { Description = "KV-cache memory all sessions may reserve, in MiB", DefaultValueFactory = _ => 1024 };
        var command = new Command("node", "Run a mesh peer; with --model, serve blocks of it") { listen, identity, bootstrap, model, blocks, numBlocks, executor, linkDelay, maxSessions, kvBudget, threads };
        command.SetAction(async (parse, cancellation) =>
        {
            var log = new Action<string>(line => { lock (console.Error) console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"); });
            var identityPath = parse.GetValue(identity);
            using var key = identityPath is null ? Ed25519KeyPair.Generate() : KeyFile.LoadOrCreate(identityPath);
            var modelDirectory = parse.GetValue(model);
            var manifest = modelDirectory is null ? null : Manifest.Load(modelDirectory);
            StageServer? server = null;
            ServedSpan? span = null;
            StageConnector? connector = null;
            await using var peer = await MeshPeer.StartAsync(key, parse.GetValue(listen)!, parse.GetValue(bootstrap)!, DhtMode.Server, log,
                host => connector = StageHosting.Connector(host, Durations.Parse(parse.GetValue(linkDelay)!)), cancellation);
            try
            {
                if (manifest is not null)
                {
                    var range = parse.GetValue(blocks) is { } text
                        ? BlockRange.Parse(text)
                        : await ChooseSpanAsync(peer, manifest, parse.GetValue(numBlocks) ?? manifest.BlockCount, cancellation);
                    span = ServedSpan.Load(modelDirectory!, range, ExecutorKinds.Parse(parse.GetValue(executor)!), parse.GetValue(maxSessions), log, parse.GetValue(threads));
                    server = new StageServer(span, new NodeOptions(parse.GetValue(maxSessions), parse.GetValue(kvBudget) * (1L << 20)), connector!, log);
                    StageHosting.Serve(peer.Host, server, connector!);
                    var throughput = MeasureThroughput(span);
                    log($"serving blocks {span.Blocks} of model {manifest.ModelId} at {throughput:F1} tokens/s");
                    var online = server;
                    _ = peer.Spans.RunAsync(() => new SpanAnnouncement(manifest.ModelId, span.Blocks, throughput, ServerState.Online,
                        online.FreeKvBytes / span.KvBytesPerPosition(span.Blocks)), cancellation);
                }
                var ready = new Dictionary<string, object?>
                {
                    ["event"] = "ready",
                    ["peerId"] = peer.Host.PeerId.ToString(),
                    ["listen"] = peer.Host.ListenAddresses.Select(a => a.ToString()).ToArray(),
                };
                if (span is not null) ready["blocks"] = $"{span.Blocks.Start}:{span.Blocks.End}";
                console.Out.WriteLine(JsonSerializer.Serialize(ready));
                console.Out.Flush();

                await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
                log("stopping");
                if (span is not null && manifest is not null)
                {
                    using var goodbye = new CancellationTokenSource(TimeSpan.FromSeconds(3));
                    try
                    {
                        await peer.Spans.AnnounceAsync(new SpanAnnouncement(manifest.ModelId, span.Blocks, 0, ServerState.Offline, 0), goodbye.Token);
                    }
                    catch (Exception e) when (e is MeshException or OperationCanceledException)
                    {
                        log($"could not announce going offline: {e.Message}");
                    }
                }
                return (int)ExitCode.Ok;
            }
            finally
            {
                if (server is not null) await server.DisposeAsync();
                span?.Dispose();
            }
        });
        return command;
    }
}
