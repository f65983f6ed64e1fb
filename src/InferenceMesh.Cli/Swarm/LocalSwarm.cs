using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Onnx;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Mesh;

namespace InferenceMesh.Cli.Swarm;

/// <summary>Starts and stops local swarms of <c>inferencemesh node</c> processes (used by <c>swarm</c> and <c>demo</c>).</summary>
public static class LocalSwarm
{
    /// <summary>Starts a bootstrap node and the serving nodes, waits until every block is served, records the swarm. Safe to cancel (started processes are killed).</summary>
    public static async Task<SwarmState> StartAsync(SwarmSettings settings, string model, string state, ICliConsole console, CancellationToken cancellation)
    {
        Directory.CreateDirectory(state);
        var split = PerBlockSplit(model, state, console);
        var manifest = Manifest.Load(split);
        
        var bootstrap = await Progress.RunAsync(console, "starting the bootstrap node", () => NodeLauncher.StartAsync("bootstrap", ["--identity", Identity(state, 0), "--link-delay", settings.LinkDelay],
            Path.Combine(state, "bootstrap.log"), Identity(state, 0), null, TimeSpan.FromSeconds(60), cancellation));
        var started = new List<SwarmProcess>();
        // Chosen here, not by each node from the DHT, so that every block gets its replicas and a rerun gives the same swarm.
        var spans = SpanChooser.Stripe(manifest.BlockCount, settings.Nodes, settings.Replicas);
        try
        {
            for (var i = 1; i <= settings.Nodes; i++)
            {
                var blocks = spans[i - 1];
                var name = $"node-{i}";
                var identity = Identity(state, i);
                string[] arguments = ["--identity", identity, "--bootstrap", bootstrap.DialAddress, "--model", split, "--blocks", $"{blocks.Start}:{blocks.End}",
                    "--executor", settings.Executor, "--link-delay", settings.LinkDelay, "--max-sessions", settings.MaxSessions.ToString(), "--kv-budget-mb", settings.KvBudgetMb.ToString(), "--threads", settings.Threads.ToString(), "--max-batch", settings.MaxBatch.ToString(),
                    "--announce-ttl", settings.AnnounceTtl, .. settings.Metrics ? ["--metrics-url", $"http://127.0.0.1:{FreeLoopbackPort()}/metrics/"] : Array.Empty<string>()];
                started.Add(await Progress.RunAsync(console, $"starting {name} serving {blocks}", () => NodeLauncher.StartAsync(name, arguments, Path.Combine(state, $"{name}.log"), identity, $"{blocks.Start}:{blocks.End}", TimeSpan.FromSeconds(120), cancellation)));
            }
            await Progress.RunAsync(console, "waiting until the DHT lists every block", () => WaitForCoverageAsync(bootstrap.DialAddress, manifest, TimeSpan.FromSeconds(60), cancellation));
        }
        catch
        {
            foreach (var process in started.Append(bootstrap)) NodeLauncher.Stop(process.Pid, force: true);
            throw;
        }
        var swarm = new SwarmState(split, manifest.ModelId, manifest.BlockCount, settings.LinkDelay, bootstrap, started, DateTimeOffset.UtcNow, settings.Replicas);
        swarm.Save(state);
        return swarm;
    }

    /// <summary>Joins the swarm as a client and waits until the DHT lists an online server for every block.</summary>
    private static async Task WaitForCoverageAsync(string bootstrap, Manifest manifest, TimeSpan timeout, CancellationToken cancellation)
    {
        using var key = Ed25519KeyPair.Generate();
        await using var peer = await MeshPeer.StartAsync(new MeshPeerOptions { Identity = key, Bootstrap = [Multiaddr.Parse(bootstrap)], RequireBootstrap = true }, cancellation);
        await peer.Spans.WaitUntilServedAsync(manifest.ModelId, manifest.BlockCount, timeout, TimeSpan.FromMilliseconds(250), cancellation);
    }

    /// <summary>
    /// Starts a stopped node of the recorded swarm again, with its identity, blocks and settings, and waits
    /// until the DHT lists every block again. Safe to cancel.
    /// </summary>
    public static async Task<SwarmProcess> RestartAsync(string directory, string name, CancellationToken cancellation)
    {
        var swarm = SwarmState.Load(directory);
        var node = swarm.Nodes.FirstOrDefault(n => n.Name == name || n.PeerId == name)
            ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"no serving node '{name}' in the swarm; 'inferencemesh swarm status' lists them");
        if (node.IsRunning)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"{node.Name} (pid {node.Pid}) is still running");
        var restarted = await NodeLauncher.StartAsync(node.Name, node.Arguments, node.LogFile, node.IdentityFile, node.Blocks, TimeSpan.FromSeconds(120), cancellation);
        (swarm with { Nodes = swarm.Nodes.Select(n => n.Name == node.Name ? restarted : n).ToList() }).Save(directory);
        await WaitForCoverageAsync(swarm.Bootstrap.DialAddress, Manifest.Load(swarm.Model), TimeSpan.FromSeconds(60), cancellation);
        return restarted;
    }

    /// <summary>Stops every process of the recorded swarm (SIGTERM, SIGKILL after 10 s) and deletes the record; returns how many there were.</summary>
    public static async Task<int> StopAsync(string directory)
    {
        var swarm = SwarmState.Load(directory);
        var all = swarm.Nodes.Prepend(swarm.Bootstrap).ToList();
        foreach (var process in all) NodeLauncher.Stop(process.Pid, force: false);
        await Task.WhenAll(all.Select(p => NodeLauncher.WaitForExitAsync(p.Pid, TimeSpan.FromSeconds(10))));
        foreach (var process in all.Where(p => p.IsRunning)) NodeLauncher.Stop(process.Pid, force: true);
        File.Delete(SwarmState.PathIn(directory));
        return all.Count;
    }

    /// <summary>
    /// A loopback port free now, for a node's metrics listener. Another process could take it before the node binds
    /// it; the node would then fail to start and say so, which a local test swarm can live with.
    /// </summary>
    private static int FreeLoopbackPort()
    {
        using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        return ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>Fixed identities: node i of a swarm always has the same PeerId (its key is derived from its index).</summary>
    private static string Identity(string state, int index)
    {
        var path = Path.Combine(state, $"node-{index}.key");
        if (!File.Exists(path))
        {
            var seed = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes($"inferencemesh swarm node {index}"));
            using var key = Ed25519KeyPair.FromSeed(seed);
            KeyFile.Save(path, key);
        }
        return Path.GetFullPath(path);
    }

    /// <summary>A split directory whose stages are single blocks (so any span can be served), splitting an imported model if needed.</summary>
    private static string PerBlockSplit(string model, string state, ICliConsole console)
    {
        if (File.Exists(Path.Combine(model, Manifest.FileName)))
        {
            var manifest = Manifest.Load(model, verifyFiles: false);
            if (manifest.BlockStages.All(s => s.Blocks!.Value.Count == 1)) return Path.GetFullPath(model);
            throw new MeshException(MeshErrorCode.InvalidArgument, $"{model} is split into multi-block stages; give the imported model directory or split it with --stages {manifest.BlockCount}");
        }
        // An imported model's model.onnx, or a foreign export's graph under any name.
        var source = ForeignModel.FindModelFile(model);
        var target = Path.GetFullPath(Path.Combine(state, "model"));
        if (!File.Exists(Path.Combine(target, Manifest.FileName)))
        {
            console.Error.WriteLine($"splitting {source} one block per stage into {target}");
            ModelStore.Split(source, n => BlockRange.SplitEvenly(n, n), target);
        }
        return target;
    }
}
