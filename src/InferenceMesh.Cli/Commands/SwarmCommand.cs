using System.CommandLine;
using System.Text.Json;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Core;

namespace InferenceMesh.Cli.Commands;

/// <summary><c>inferencemesh swarm up|status|kill|down</c>: a local multi-process swarm on loopback for testers.</summary>
public static class SwarmCommand
{
    public static readonly Option<string> StateDirectory = new("--state") { Description = "Folder holding the swarm's state file, keys and logs", DefaultValueFactory = _ => SwarmState.DefaultDirectory, Recursive = true };

    public static Command Create(ICliConsole console)
    {
        var command = new Command("swarm", "Start, inspect and stop a local swarm of node processes") { StateDirectory };
        command.Subcommands.Add(Up(console));
        command.Subcommands.Add(Status(console));
        command.Subcommands.Add(Kill(console));
        command.Subcommands.Add(Restart(console));
        command.Subcommands.Add(Down(console));
        return command;
    }

    private static Command Up(ICliConsole console)
    {
        var nodes = new Option<int>("--nodes") { Description = "Serving nodes to start", DefaultValueFactory = _ => 3 };
        var replicas = new Option<int>("--replicas") { Description = "Servers per block, so that killing replicas − 1 nodes leaves every block served (needs at least that many nodes)", DefaultValueFactory = _ => 2 };
        var model = new Option<string>("--model") { Description = "Split model directory, or an imported one (split one block per stage into the state folder)", Required = true };
        var linkDelay = new Option<string>("--link-delay") { Description = "Emulated one-way delay on every stage stream, e.g. 20ms", DefaultValueFactory = _ => "0" };
        var executor = new Option<string>("--executor") { Description = "What runs the blocks on every node", DefaultValueFactory = _ => "auto" };
        var config = new Option<string?>("--config") { Description = "A JSON file under mesh-config/ with any of: nodes, replicas, linkDelay, executor, maxSessions, kvBudgetMb" };
        var announceTtl = new Option<string>("--announce-ttl") { Description = "Lifetime of each node's span announcements; a killed node stays listed until they lapse", DefaultValueFactory = _ => "120s" };
        var metrics = new Option<bool>("--metrics") { Description = "Serve each node's Prometheus metrics on a free loopback port (status --json lists the URLs)" };
        var command = new Command("up", "Start a bootstrap node and N serving nodes on loopback, wait until every block is served") { nodes, replicas, model, linkDelay, executor, config, announceTtl, metrics };
        command.SetAction(async (parse, cancellation) =>
        {
            var state = parse.GetValue(StateDirectory)!;
            if (SwarmState.TryLoad(state) is { } running && running.Nodes.Concat([running.Bootstrap]).Any(n => n.IsRunning))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"a swarm is already running from {state}; stop it with 'inferencemesh swarm down'");
            var fromFile = SwarmSettingsFile.Load(parse.GetValue(config));
            // Options given on the command line win over the config file, which wins over the defaults.
            var settings = new SwarmSettings(
                Given(parse, nodes) || fromFile.Nodes is null ? parse.GetValue(nodes) : fromFile.Nodes.Value,
                Given(parse, linkDelay) || fromFile.LinkDelay is null ? parse.GetValue(linkDelay)! : fromFile.LinkDelay,
                Given(parse, executor) || fromFile.Executor is null ? parse.GetValue(executor)! : fromFile.Executor,
                fromFile.MaxSessions ?? 64, fromFile.KvBudgetMb ?? 1024,
                Replicas: Given(parse, replicas) || fromFile.Replicas is null ? parse.GetValue(replicas) : fromFile.Replicas.Value,
                AnnounceTtl: parse.GetValue(announceTtl)!, Metrics: parse.GetValue(metrics));
            Durations.Parse(settings.LinkDelay);
            Durations.Parse(settings.AnnounceTtl);
            if (settings.Nodes < 1) throw new MeshException(MeshErrorCode.InvalidArgument, "--nodes must be at least 1");
            if (settings.Replicas > settings.Nodes)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"--replicas {settings.Replicas} needs at least {settings.Replicas} nodes; give --nodes {settings.Replicas} or more, or fewer replicas");
            var swarm = await LocalSwarm.StartAsync(settings, parse.GetValue(model)!, state, console, cancellation);
            PrintTable(console, swarm);
            console.Out.WriteLine($"swarm recorded in {SwarmState.PathIn(state)}; bootstrap {swarm.Bootstrap.DialAddress}");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static bool Given(ParseResult parse, Option option) => parse.GetResult(option) is { Implicit: false };

    private static Command Status(ICliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "Print the swarm as JSON for scripts" };
        var command = new Command("status", "Show the recorded swarm and which processes still run") { json };
        command.SetAction(parse =>
        {
            var swarm = SwarmState.Load(parse.GetValue(StateDirectory)!);
            if (parse.GetValue(json))
            {
                var rows = swarm.Nodes.Prepend(swarm.Bootstrap).Select(n => new { n.Name, n.PeerId, address = n.DialAddress, n.Blocks, n.Pid, state = n.IsRunning ? "running" : "stopped", n.MetricsUrl });
                var blocks = ServersPerBlock(swarm).Select((count, block) => new { block, runningServers = count });
                console.Out.WriteLine(JsonSerializer.Serialize(new { swarm.Model, swarm.ModelId, swarm.BlockCount, swarm.LinkDelay, swarm.Replicas, nodes = rows, blocks }, CliJson.Options));
            }
            else PrintTable(console, swarm);
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Kill(ICliConsole console)
    {
        var peer = new Argument<string>("peer") { Description = "Node name (node-2) or PeerId" };
        var command = new Command("kill", "SIGKILL one node of the swarm") { peer };
        command.SetAction(async parse =>
        {
            var swarm = SwarmState.Load(parse.GetValue(StateDirectory)!);
            var name = parse.GetValue(peer)!;
            var target = swarm.Nodes.Prepend(swarm.Bootstrap).FirstOrDefault(n => n.Name == name || n.PeerId == name)
                ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"no node '{name}' in the swarm; 'inferencemesh swarm status' lists them");
            if (!NodeLauncher.Stop(target.Pid, force: true))
                throw new MeshException(MeshErrorCode.InvalidArgument, $"{target.Name} (pid {target.Pid}) is not running");
            await NodeLauncher.WaitForExitAsync(target.Pid, TimeSpan.FromSeconds(10));
            console.Out.WriteLine($"killed {target.Name} {target.PeerId} (pid {target.Pid})");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Restart(ICliConsole console)
    {
        var peer = new Argument<string>("peer") { Description = "Node name (node-2) or PeerId" };
        var command = new Command("restart", "Start a stopped node again with its identity and blocks") { peer };
        command.SetAction(async (parse, cancellation) =>
        {
            var node = await LocalSwarm.RestartAsync(parse.GetValue(StateDirectory)!, parse.GetValue(peer)!, cancellation);
            console.Out.WriteLine($"restarted {node.Name} {node.PeerId} (pid {node.Pid}) serving {BlockRange.Parse(node.Blocks!)}");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static Command Down(ICliConsole console)
    {
        var command = new Command("down", "Stop every process of the swarm (SIGTERM, then SIGKILL after 10 s) and forget it");
        command.SetAction(async parse =>
        {
            var count = await LocalSwarm.StopAsync(parse.GetValue(StateDirectory)!);
            console.Out.WriteLine($"stopped {count} processes");
            return (int)ExitCode.Ok;
        });
        return command;
    }

    private static void PrintTable(ICliConsole console, SwarmState swarm)
    {
        console.Out.WriteLine($"{"name",-10} {"peer",-54} {"blocks",-8} {"state",-8} address");
        foreach (var node in swarm.Nodes.Prepend(swarm.Bootstrap))
            console.Out.WriteLine($"{node.Name,-10} {node.PeerId,-54} {node.Blocks ?? "-",-8} {(node.IsRunning ? "running" : "stopped"),-8} {node.DialAddress}");
        var perBlock = ServersPerBlock(swarm);
        console.Out.WriteLine($"running servers per block: {string.Join("  ", perBlock.Select((count, block) => $"{block}:{count}"))}"
            + (perBlock.Any(c => c < 2) ? "  (a block with fewer than 2 stops generations if its server dies)" : ""));
    }

    /// <summary>Running serving nodes per block, from the recorded spans and the processes alive now.</summary>
    private static int[] ServersPerBlock(SwarmState swarm)
    {
        var counts = new int[swarm.BlockCount];
        foreach (var node in swarm.Nodes.Where(n => n.Blocks is not null && n.IsRunning))
        {
            var blocks = BlockRange.Parse(node.Blocks!);
            for (var b = blocks.Start; b < blocks.End; b++) counts[b]++;
        }
        return counts;
    }


    /// <summary>A swarm configuration file (mesh-config/*.json); every field optional, unknown fields refused.</summary>
    internal sealed record SwarmSettingsFile(int? Nodes, string? LinkDelay, string? Executor, int? MaxSessions, int? KvBudgetMb, int? Replicas = null)
    {
        public static SwarmSettingsFile Load(string? file)
        {
            if (file is null) return new SwarmSettingsFile(null, null, null, null, null);
            if (!File.Exists(file)) throw new MeshException(MeshErrorCode.InvalidArgument, $"swarm config {file} does not exist");
            try
            {
                return JsonSerializer.Deserialize<SwarmSettingsFile>(File.ReadAllText(file), new JsonSerializerOptions
                {
                    PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
                    UnmappedMemberHandling = System.Text.Json.Serialization.JsonUnmappedMemberHandling.Disallow,
                }) ?? throw new MeshException(MeshErrorCode.InvalidArgument, $"swarm config {file} is empty");
            }
            catch (JsonException e)
            {
                throw new MeshException(MeshErrorCode.InvalidArgument, $"swarm config {file}: {e.Message}");
            }
        }
    }
}
