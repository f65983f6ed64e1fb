using InferenceMesh.P2P.Hosting;
using InferenceMesh.Protocol;
using Prometheus;

namespace InferenceMesh.Node;

/// <summary>
/// A node's Prometheus metrics (prometheus-net, one registry per node): sessions open, KV-cache bytes reserved and
/// budgeted, steps and positions computed and the time spent computing them, the throughput the node announces, and
/// the stage-protocol bytes it sent and received. Read from the stage server and the traffic counter when scraped.
/// </summary>
public sealed class NodeMetrics
{
    /// <param name="traffic">The bytes counter of the node's stage channels, inbound and outbound.</param>
    /// <param name="usage">The libp2p host's resource scopes (pending connections, connection memory, limit hits); none exported when null.</param>
    public NodeMetrics(StageServer server, NodeOptions limits, double announcedThroughput, StageTraffic traffic, Libp2pResourceUsage? usage = null)
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
        var sent = factory.CreateCounter("inferencemesh_node_stage_bytes_sent_total", "Stage-protocol bytes (whole frames) sent to clients and next hops.");
        var received = factory.CreateCounter("inferencemesh_node_stage_bytes_received_total", "Stage-protocol bytes (whole frames) received from clients and previous hops.");
        var pending = factory.CreateGauge("inferencemesh_p2p_pending_inbound_connections", "Inbound connections accepted and not yet upgraded (multistream, Noise, Yamux).");
        var memory = factory.CreateGauge("inferencemesh_p2p_connection_memory_bytes", "Bytes reserved by open libp2p connections.");
        var hits = factory.CreateCounter("inferencemesh_p2p_limit_hits_total", "Connections or streams refused or closed by a libp2p resource limit.", "limit");
        Registry.AddBeforeCollectCallback(() =>
        {
            if (usage is not null)
            {
                pending.Set(usage.PendingInbound);
                memory.Set(usage.ConnectionMemory);
                foreach (var limit in Enum.GetValues<Libp2pLimit>())
                    hits.WithLabels(limit.ToString()).IncTo(usage.Hits(limit));
            }
            sessions.Set(server.SessionCount);
            reserved.Set(server.ReservedKvBytes);
            steps.IncTo(server.StepsRun);
            positions.IncTo(server.PositionsRun);
            compute.IncTo(server.ComputeTime.TotalSeconds);
            sent.IncTo(traffic.BytesSent);
            received.IncTo(traffic.BytesReceived);
        });
    }

    /// <summary>The registry the node's metrics endpoint serves.</summary>
    public CollectorRegistry Registry { get; }
}
