using System.Net.Http;
using InferenceMesh.Client;
using InferenceMesh.Gateway;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Integration.Tests;

/// <summary>A real 3-node swarm whose nodes serve metrics, with a gateway in this process in front of it; shared by <see cref="GatewaySwarmTests"/>.</summary>
public sealed class GatewaySwarm : IAsyncLifetime
{
    /// <summary>The mesh client's step timeout: a disconnected client's sessions must be gone from every node within it.</summary>
    public static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(10);

    public LocalSwarmHandle Swarm { get; private set; } = null!;
    public MeshClient Client { get; private set; } = null!;
    public MeshGateway Gateway { get; private set; } = null!;
    public string Url => Gateway.Urls[0];

    public async Task InitializeAsync()
    {
        Swarm = await LocalSwarmHandle.StartAsync(3, metrics: true);
        Client = await MeshClient.ConnectAsync(new MeshClientOptions { LocalSwarm = Swarm.State, StepTimeout = StepTimeout });
        Gateway = await MeshGateway.StartAsync(Client, new GatewayOptions { Urls = ["http://127.0.0.1:0"], ModelName = "stories260K" });
    }

    /// <summary>Each node's metrics, parsed, by node name.</summary>
    public async Task<Dictionary<string, Dictionary<string, double>>> ScrapeNodesAsync(HttpClient http)
    {
        var result = new Dictionary<string, Dictionary<string, double>>();
        foreach (var node in Swarm.Swarm.Nodes)
            result[node.Name] = PrometheusText.Parse(await http.GetStringAsync(node.MetricsUrl ?? throw new InvalidOperationException($"{node.Name} serves no metrics")));
        return result;
    }

    public async Task DisposeAsync()
    {
        if (Gateway is not null) await Gateway.DisposeAsync();
        if (Client is not null) await Client.DisposeAsync();
        if (Swarm is not null) await Swarm.DisposeAsync();
    }
}
