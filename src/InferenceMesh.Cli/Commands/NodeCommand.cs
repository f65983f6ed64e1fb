using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Node;
using System.Net;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Relay;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.P2P.Nat;

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
        var maxBatch = new Option<int>("--max-batch") { Description = "Steps of different sessions run as one executor call (continuous batching); 1 turns batching off", DefaultValueFactory = _ => 64 };
        var prefillChunk = new Option<int>("--prefill-chunk") { Description = "With batching, longer steps run in chunks of this many positions between other sessions' steps", DefaultValueFactory = _ => 64 };
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
        var portMap = new Option<string>("--port-map") { Description = "Ask the home router to forward the listen port: auto (UPnP, PCP and NAT-PMP in parallel), off, or a list such as upnp,natpmp,pcp; only with a non-loopback --listen address", DefaultValueFactory = _ => "auto" };
        var portMapLifetime = new Option<string>("--port-map-lifetime") { Description = "Lease asked of the router", DefaultValueFactory = _ => "60s" };
        var portMapRenew = new Option<string>("--port-map-renew") { Description = "Time between lease renewals (shorter than the lease)", DefaultValueFactory = _ => "20s" };
        var autonatInterval = new Option<string>("--autonat-interval") { Description = "How often to ask peers with AutoNAT whether this node is publicly reachable (a reachability line on each change), or off", DefaultValueFactory = _ => "60s" };
        var autonatConfirmations = new Option<int>("--autonat-confirmations") { Description = "Agreeing AutoNAT answers needed to call the node public or private", DefaultValueFactory = _ => 3 };
        var command = new Command("node", "Run a mesh peer; with --model, serve blocks of it") { listen, identity, bootstrap, model, blocks, numBlocks, executor, linkDelay, maxSessions, maxBatch, prefillChunk, kvBudget, kvShare, threads, metricsUrl, announceTtl, fault, relay, relayCircuitMb, relayCircuitTime, relayMaxCircuits, isPrivate, relayVia, noHolePunch, portMap, portMapLifetime, portMapRenew, autonatInterval, autonatConfirmations };
        command.SetAction(async (parse, cancellation) =>
        {
            // Address lines learned before the ready line is out wait for it, so "ready" is always the first line.
            var early = new List<object>();
            PeerId? self = null;
            string Line(object learned) => JsonSerializer.Serialize(learned switch
            {
                LearnedAddress a => new Dictionary<string, object?>
                {
                    ["event"] = "address",
                    ["kind"] = a.Kind.ToString().ToLowerInvariant(),
                    ["address"] = (a.Address.PeerId is null ? a.Address.WithPeerId(self!) : a.Address).ToString(),
                    ["source"] = a.Source,
                },
                Reachability r => new Dictionary<string, object?> { ["event"] = "reachability", ["reachability"] = r.ToString().ToLowerInvariant() },
                _ => throw new ArgumentOutOfRangeException(nameof(learned)),
            });
            void Print(object learned)
            {
                lock (console.Out)
                {
                    if (self is null)
                    {
                        early.Add(learned);
                        return;
                    }
                    console.Out.WriteLine(Line(learned));
                    console.Out.Flush();
                }
            }
            if (parse.GetValue(maxBatch) < 1 || parse.GetValue(prefillChunk) < 1)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"--max-batch ({parse.GetValue(maxBatch)}) and --prefill-chunk ({parse.GetValue(prefillChunk)}) must be at least 1");
            var autonatEvery = parse.GetValue(autonatInterval)!;
            var listenAddresses = parse.GetValue(listen)!.Select(Multiaddr.Parse).ToList();
            var mapping = PortMapping(parse.GetValue(portMap)!, listenAddresses, Durations.Parse(parse.GetValue(portMapLifetime)!), Durations.Parse(parse.GetValue(portMapRenew)!));
            var options = new MeshNodeOptions
            {
                IdentityFile = parse.GetValue(identity),
                Listen = listenAddresses,
                PortMapping = mapping,
                AddressLearned = Print,
                ReachabilityChanged = r => Print(r),
                ReachabilityCheckInterval = autonatEvery == "off" ? null : Durations.Parse(autonatEvery),
                AutoNat = new AutoNatOptions { Confirmations = parse.GetValue(autonatConfirmations) },
                Bootstrap = parse.GetValue(bootstrap)!.Select(Multiaddr.Parse).ToList(),
                ModelDirectory = parse.GetValue(model),
                Blocks = parse.GetValue(blocks) is { } text ? BlockRange.Parse(text) : null,
                BlockCount = parse.GetValue(numBlocks),
                Executor = ExecutorKinds.Parse(parse.GetValue(executor)!),
                Threads = parse.GetValue(threads),
                LinkDelay = Durations.Parse(parse.GetValue(linkDelay)!),
                Limits = new NodeOptions(parse.GetValue(maxSessions), parse.GetValue(kvBudget) * (1L << 20), KvSharePerPeer: parse.GetValue(kvShare), MaxBatchSize: parse.GetValue(maxBatch), PrefillChunk: parse.GetValue(prefillChunk)),
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
            lock (console.Out)
            {
                console.Out.WriteLine(JsonSerializer.Serialize(ready));
                self = node.PeerId;
                foreach (var learned in early) console.Out.WriteLine(Line(learned));
                console.Out.Flush();
            }
            await Task.Delay(Timeout.Infinite, cancellation).ContinueWith(_ => { }, TaskScheduler.Default);
            return (int)ExitCode.Ok;
        });
        return command;
    }

    /// <summary>The port-mapping options for <c>--port-map</c>; null when off or when every listen address is loopback (nothing to forward to).</summary>
    private static PortMapperOptions? PortMapping(string text, IReadOnlyList<Multiaddr> listen, TimeSpan lifetime, TimeSpan renew)
    {
        if (text == "off" || listen.All(a => a.TryGetTcpEndPoint() is not { } e || IPAddress.IsLoopback(e.Address)))
            return null;
        IReadOnlyList<PortMappingProtocol> protocols = text == "auto"
            ? [PortMappingProtocol.Upnp, PortMappingProtocol.Pcp, PortMappingProtocol.NatPmp]
            : text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Select(p => p.ToLowerInvariant() switch
            {
                "upnp" => PortMappingProtocol.Upnp,
                "natpmp" or "nat-pmp" => PortMappingProtocol.NatPmp,
                "pcp" => PortMappingProtocol.Pcp,
                _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"--port-map: '{p}' is not auto, off, upnp, natpmp or pcp"),
            }).ToList();
        if (renew <= TimeSpan.Zero || renew >= lifetime)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"--port-map-renew ({renew.TotalSeconds} s) must be positive and shorter than --port-map-lifetime ({lifetime.TotalSeconds} s)");
        return new PortMapperOptions { Protocols = protocols, Lifetime = lifetime, RenewInterval = renew };
    }
}
