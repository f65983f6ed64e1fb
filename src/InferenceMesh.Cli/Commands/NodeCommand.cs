using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh node</c>: runs a peer until SIGINT/SIGTERM. It prints one JSON line
/// <c>{"event":"ready",…}</c> on stdout once it listens, then logs on stderr. With <c>--model</c> it serves
/// block stages over <c>/inferencemesh/stage/1.0.0</c>.
/// </summary>
public static class NodeCommand
{
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
        var kvBudget = new Option<int>("--kv-budget-mb") { Description = "KV-cache memory all sessions may reserve, in MiB", DefaultValueFactory = _ => 1024 };
        var command = new Command("node", "Run a mesh peer; with --model, serve blocks of it") { listen, identity, bootstrap, model, blocks, numBlocks, executor, linkDelay, maxSessions, kvBudget };
        command.SetAction(async (parse, cancellation) =>
        {
            var log = new Action<string>(line => { lock (console.Error) console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"); });
            var identityPath = parse.GetValue(identity);
            using var key = identityPath is null ? Ed25519KeyPair.Generate() : KeyFile.LoadOrCreate(identityPath);
            await using var host = new Libp2pHost(new Libp2pHostOptions { Identity = key, Log = log });
            var connector = StageHosting.Connector(host, Durations.Parse(parse.GetValue(linkDelay)!));

            ServedSpan? span = null;
            StageServer? server = null;
            try
            {
                if (parse.GetValue(model) is { } modelDirectory)
                {
                    var manifest = Manifest.Load(modelDirectory);
                    var range = parse.GetValue(blocks) is { } text
                        ? BlockRange.Parse(text)
                        : SpanChooser.Choose(manifest.BlockCount, parse.GetValue(numBlocks) ?? manifest.BlockCount, []);
                    span = ServedSpan.Load(modelDirectory, range, ExecutorKinds.Parse(parse.GetValue(executor)!), parse.GetValue(maxSessions), log);
                    server = new StageServer(span, new NodeOptions(parse.GetValue(maxSessions), parse.GetValue(kvBudget) * (1L << 20)), connector, log);
                    StageHosting.Serve(host, server, connector);
                    log($"serving blocks {span.Blocks} of model {manifest.ModelId}");
                }
                await host.StartAsync(parse.GetValue(listen)!.Select(Multiaddr.Parse), cancellation);
                var ready = new Dictionary<string, object?>
                {
                    ["event"] = "ready",
                    ["peerId"] = host.PeerId.ToString(),
                    ["listen"] = host.ListenAddresses.Select(a => a.ToString()).ToArray(),
                };
                if (span is not null) ready["blocks"] = $"{span.Blocks.Start}:{span.Blocks.End}";
                console.Out.WriteLine(JsonSerializer.Serialize(ready));
                console.Out.Flush();

                foreach (var peer in parse.GetValue(bootstrap)!)
                {
                    try
                    {
                        var connection = await host.DialAsync(Multiaddr.Parse(peer), cancellation);
                        log($"joined through {connection.RemotePeer}");
                    }
                    catch (MeshException e)
                    {
                        log($"bootstrap {peer} failed: {e.Message}");
                    }
                }
                await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
                log("stopping");
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
