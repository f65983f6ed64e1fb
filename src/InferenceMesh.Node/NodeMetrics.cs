using Prometheus;

namespace InferenceMesh.Node;

/// <summary>
/// A node's Prometheus metrics (prometheus-net, one registry per node): sessions open, KV-cache bytes reserved and
/// budgeted, steps and positions computed and the time spent computing them, and the throughput the node announces.
/// Read from the stage server when scraped.
/// </summary>
public sealed class NodeMetrics
{
    public NodeMetrics(StageServer server, NodeOptions limits, double announcedThroughput)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        var sessions = factory.CreateGauge("inferencemesh_node_sessions_open", "Sessions holding KV state on this node.");
        var reserved = factory.CreateGauge("inferencemesh_node_kv_reserved_bytes", "KV-cache bytes reserved by open sessions.");
        factory.CreateGauge("inferencemesh_node_kv_budget_bytes", "KV-cache bytes all sessions may reserve.").Set(limits.KvBudgetBytes);
        factory.CreateGauge("inferencemesh_node_throughput_tokens_per_second", "Decode throughput through the span, as measured at start and announced.").Set(announcedThroughput);
        var steps = factory.CreateCounter("inferencemesh_node_steps_total", "Steps computed through the served stages.");
        var positions = factory.CreateCounter("inferencemesh_node_positions_total", "Positions (tokens) those steps carried.");
        var compute = factory.CreateCounter("inferencemesh_node_compute_seconds_total", "Time spent inside the executors.");
        Registry.AddBeforeCollectCallback(() =>
        {
            sessions.Set(server.SessionCount);
            reserved.Set(server.ReservedKvBytes);
            steps.IncTo(server.StepsRun);
            positions.IncTo(server.PositionsRun);
            compute.IncTo(server.ComputeTime.TotalSeconds);
        });
    }

    /// <summary>The registry the node's metrics endpoint serves.</summary>
    public CollectorRegistry Registry { get; }
}
