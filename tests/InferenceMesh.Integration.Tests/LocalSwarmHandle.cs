using InferenceMesh.Cli;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>
/// A real local swarm, started as <c>swarm up</c> starts it: a bootstrap process and N node processes on loopback,
/// joined over libp2p and the DHT. Tests drive it with the CLI's verbs and join it with <see cref="MeshClient.ConnectAsync"/>.
/// </summary>
public sealed class LocalSwarmHandle : IAsyncDisposable
{
    private LocalSwarmHandle(string state, SwarmState swarm)
    {
        State = state;
        Swarm = swarm;
    }

    public string State { get; }
    public SwarmState Swarm { get; }

    /// <param name="replicas">Servers per block; the CLI's default (2) where the node count allows.</param>
    /// <param name="announceTtl">Lifetime of the nodes' span announcements (how long a killed node stays listed).</param>
    /// <param name="metrics">Whether each node serves Prometheus metrics (its <see cref="SwarmProcess.MetricsUrl"/>).</param>
    /// <param name="model">The imported model directory to serve; stories260K when null.</param>
    public static async Task<LocalSwarmHandle> StartAsync(int nodes, string linkDelay = "0", int? replicas = null, string announceTtl = "120s", bool metrics = false,
        string? model = null)
    {
        var state = TestModels.NewTempDirectory($"swarm{nodes}");
        var console = new WriterCliConsole(TextWriter.Null, TextWriter.Null);
        var settings = new SwarmSettings(nodes, linkDelay, "ort", 64, 256, AnnounceTtl: announceTtl, Metrics: metrics);
        settings = settings with { Replicas = replicas ?? Math.Min(settings.Replicas, nodes) };
        var swarm = await LocalSwarm.StartAsync(settings, model ?? TestModels.Stories260K, state, console, CancellationToken.None);
        return new LocalSwarmHandle(state, swarm);
    }

    /// <summary>Runs the CLI in this process against the swarm (its state folder is passed to verbs that take one).</summary>
    public Task<(int Code, string Out, string Error)> RunAsync(params string[] args) =>
        RunCliAsync(args[0] is "prompt" or "swarm" ? [.. args, "--state", State] : args);

    public static async Task<(int Code, string Out, string Error)> RunCliAsync(string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var code = await CliApp.RunAsync(args, new WriterCliConsole(output, error));
        return (code, output.ToString(), error.ToString());
    }

    /// <summary>A client joined to the swarm through the library, for tests that watch the route.</summary>
    /// <param name="serversKeepOutputs">Chained routes whose servers keep their outputs (<see cref="MeshClientOptions.ServersKeepOutputs"/>, verification off).</param>
    public Task<MeshClient> ClientAsync(RouteMode mode, Action<string>? log = null, bool serversKeepOutputs = false) =>
        MeshClient.ConnectAsync(new MeshClientOptions
        {
            LocalSwarm = State, Mode = mode, StepTimeout = TimeSpan.FromSeconds(20), Log = log,
            ServersKeepOutputs = serversKeepOutputs, Verify = serversKeepOutputs ? VerifyMode.Off : new MeshClientOptions().Verify,
        });

    public async ValueTask DisposeAsync() => await LocalSwarm.StopAsync(State);
}
