using InferenceMesh.Cli;
using InferenceMesh.Cli.Swarm;
using InferenceMesh.Client;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>A real local swarm: a bootstrap process and N node processes on loopback, joined over libp2p and the DHT.</summary>
public sealed class LocalSwarmHandle : IAsyncDisposable
{
    private LocalSwarmHandle(string state, SwarmState swarm)
    {
        State = state;
        Swarm = swarm;
    }

    public string State { get; }
    public SwarmState Swarm { get; }

    public static async Task<LocalSwarmHandle> StartAsync(int nodes, string linkDelay = "0")
    {
        var state = TestModels.NewTempDirectory($"swarm{nodes}");
        var console = new WriterCliConsole(TextWriter.Null, TextWriter.Null);
        var swarm = await LocalSwarm.StartAsync(new SwarmSettings(nodes, linkDelay, "ort", 64, 256), TestModels.Stories260K, state, console, CancellationToken.None);
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

    /// <summary>A client joined to the swarm's DHT, for tests that watch the route.</summary>
    public Task<MeshClientConnection> ClientAsync(RouteMode mode) =>
        MeshClientConnection.ConnectAsync([Swarm.Bootstrap.DialAddress], Swarm.Model, new MeshClientOptions(mode, StepTimeout: TimeSpan.FromSeconds(20)), TimeSpan.Zero, _ => { }, CancellationToken.None);

    public async ValueTask DisposeAsync() => await LocalSwarm.StopAsync(State);
}
