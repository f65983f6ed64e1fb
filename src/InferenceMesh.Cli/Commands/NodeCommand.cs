using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Relay;

namespace InferenceMesh.Cli.Commands;

/// <summary>
/// <c>inferencemesh node</c>: runs a <see cref="MeshNode"/> until SIGINT/SIGTERM. It prints one JSON line
/// <c>{"event":"ready",…}</c> on stdout once it listens, then logs on stderr. With <c>--model</c> it serves
/// block stages over <c>/inferencemesh/stage/1.0.0</c>.
/// </summary>
public static class NodeCommand
{
    public static Command Create(ICliConsole console)
    {
        var listen = new Option<string[]>("--listen") { Description = "Multiaddrs to listen on (0.0.0.0 announces this machine's interface addresses)", DefaultValueFactory = _ => ["/ip4/127.0.0.1/tcp/0"], AllowMultipleArgumentsPerToken = true };
        var identity = new Option<string?>("--identity") { Description = "Ed25519 key file (created with mode 0600 if missing); a fresh key when omitted" };
        var bootstrap = new Option<string[]>("--bootstrap") { Description = "Peers to join through, as multiaddrs with /p2p/", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var model = new Option<string?>("--model") { Description = "Split model directory (manifest.json) to serve blocks of" };
        var blocks = new Option<string?>("--blocks") { Description = "Blocks to serve, e.g. 0:3 (must fall on stage boundaries)" };
        var numBlocks = new Option<int?>("--num-blocks") { Description = "Serve this many blocks where the swarm is weakest (Petals' rule); all blocks when neither this nor --blocks is given" };
        var executor = new Option<string>("--executor") { Description = "What runs the blocks: auto, ort or ilgpu", DefaultValueFactory = _ => "auto" };
        var linkDelay = new Option<string>("--link-delay") { Description = "Emulated one-way delay added to every stage stream this node sends on, e.g. 20ms", DefaultValueFactory = _ => "0" };
        var maxSessions = new Option<int>("--max-sessions") { Description = "Sessions served at once", DefaultValueFactory = _ => 64 };
        var threads = new Option<int>("--threads") { Description = "ONNX Runtime threads per stage run (0: one per core); 1 suits several nodes on one machine", DefaultValueFactory = _ => 1 };
        var metricsUrl = new Option<string?>("--metrics-url") { Description = "Serve Prometheus metrics at this URL, e.g. http://127.0.0.1:9464/metrics/" };
        var kvBudget = new Option<int>("--kv-budget-mb") { Description = "KV-cache memory all sessions may reserve, in MiB", DefaultValueFactory = _ => 1024 };
        var kvShare = new Option<double>("--kv-share-per-peer") { Description = "Fraction of the KV budget one remote peer's sessions may reserve (0-1]", DefaultValueFactory = _ => 0.5 };
        var announceTtl = new Option<string>("--announce-ttl") { Description = "Lifetime of the span announcements, re-announced every half of it; a killed node leaves listings when they lapse", DefaultValueFactory = _ => "120s" };
        var fault = new Option<string[]>("--fault") { Description = $"Tests only (needs {StageFault.AllowVariable}=1): lie with noise=σ, skip-block=i or weights=fp16|int8|other-seed, with rate=p, sessions=p, seed=n", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var relay = new Option<bool>("--relay") { Description = "Act as a Circuit Relay v2 relay for private nodes (a publicly reachable node)" };
        var relayCircuitMb = new Option<int>("--relay-circuit-mb") { Description = "With --relay: most MiB relayed each way per circuit", DefaultValueFactory = _ => 1024 };
        var relayCircuitTime = new Option<string>("--relay-circuit-duration") { Description = "With --relay: longest life of a circuit", DefaultValueFactory = _ => "30m" };
        var relayMaxCircuits = new Option<int>("--relay-max-circuits") { Description = "With --relay: circuits open at once (per peer: a quarter of it, at least 1)", DefaultValueFactory = _ => 64 };
        var isPrivate = new Option<bool>("--private") { Description = "This node cannot be dialled (behind a NAT): reserve on relays and announce /p2p-circuit addresses" };
        var relayVia = new Option<string[]>("--relay-via") { Description = "With --private: relays to reserve on, as multiaddrs with /p2p/ (else the DHT's)", DefaultValueFactory = _ => [], AllowMultipleArgumentsPerToken = true };
        var noHolePunch = new Option<bool>("--no-hole-punch") { Description = "Do not try DCUtR hole punching on relayed connections" };
        var command = new Command("node", "Run a mesh peer; with --model, serve blocks of it") { listen, identity, bootstrap, model, blocks, numBlocks, executor, linkDelay, maxSessions, kvBudget, kvShare, threads, metricsUrl, announceTtl, fault, relay, relayCircuitMb, relayCircuitTime, relayMaxCircuits, isPrivate, relayVia, noHolePunch };
        command.SetAction(async (parse, cancellation) =>
        {
            var options = new MeshNodeOptions
            {
                IdentityFile = parse.GetValue(identity),
                Listen = parse.GetValue(listen)!.Select(Multiaddr.Parse).ToList(),
                Bootstrap = parse.GetValue(bootstrap)!.Select(Multiaddr.Parse).ToList(),
                ModelDirectory = parse.GetValue(model),
                Blocks = parse.GetValue(blocks) is { } text ? BlockRange.Parse(text) : null,
                BlockCount = parse.GetValue(numBlocks),
                Executor = ExecutorKinds.Parse(parse.GetValue(executor)!),
                Threads = parse.GetValue(threads),
                LinkDelay = Durations.Parse(parse.GetValue(linkDelay)!),
                Limits = new NodeOptions(parse.GetValue(maxSessions), parse.GetValue(kvBudget) * (1L << 20), KvSharePerPeer: parse.GetValue(kvShare)),
                MetricsUrl = parse.GetValue(metricsUrl) is { } url ? new Uri(url) : null,
                AnnounceTtl = Durations.Parse(parse.GetValue(announceTtl)!),
                Relay = parse.GetValue(relay)
                    ? new RelayServiceOptions
                    {
                        CircuitBytes = (ulong)parse.GetValue(relayCircuitMb) << 20,
                        CircuitDuration = Durations.Parse(parse.GetValue(relayCircuitTime)!),
                        MaxCircuits = parse.GetValue(relayMaxCircuits),
                        MaxCircuitsPerPeer = Math.Max(1, parse.GetValue(relayMaxCircuits) / 4),
                    }
                    : null,
                Private = parse.GetValue(isPrivate),
                Relays = parse.GetValue(relayVia)!.Select(Multiaddr.Parse).ToList(),
                HolePunching = !parse.GetValue(noHolePunch),
                Fault = parse.GetValue(fault) is { Length: > 0 } lies ? StageFault.Parse(lies) : null,
                Log = line => { lock (console.Error) console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {line}"); },
            };
            await using var node = await MeshNode.StartAsync(options, cancellation);
            var ready = new Dictionary<string, object?>
            {
                ["event"] = "ready",
                ["peerId"] = node.PeerId.ToString(),
                ["listen"] = node.AdvertisedAddresses.Select(a => a.ToString()).ToArray(),
            };
            if (node.Peer.RelayService is not null)
                ready["relay"] = true;
            if (node.Peer.Host.Relay.CircuitAddresses is { Count: > 0 } circuits)
                ready["circuit"] = circuits.Select(a => a.ToString()).ToArray();
            if (node.Span is { } span)
            {
                ready["blocks"] = span.Blocks.ToString();
                ready["throughput"] = Math.Round(node.Throughput, 1);
            }
            console.Out.WriteLine(JsonSerializer.Serialize(ready));
            console.Out.Flush();
            await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
            return (int)ExitCode.Ok;
        });
        return command;
    }
}
