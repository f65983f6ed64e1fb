using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Mesh;
using InferenceMesh.Protocol;
using Prometheus;

namespace InferenceMesh.Node;

/// <summary>
/// A node's Prometheus metrics (prometheus-net, one registry per node): sessions open, KV-cache bytes reserved and
/// budgeted, steps and positions computed and the time spent computing them, the throughput the node announces, and
/// the stage-protocol bytes it sent and received, its open connections by path (direct or relayed) and, for a relay,
/// its open circuits and relayed bytes. Read from the stage server, the traffic counter and the host when scraped.
/// </summary>
public sealed class NodeMetrics
{
    /// <param name="server">The stage server; null for a node without a model (its session and compute figures stay 0).</param>
    /// <param name="traffic">The bytes counter of the node's stage channels, inbound and outbound.</param>
    /// <param name="peer">The node's mesh peer, for connection, relay and resource-limit figures; null leaves them out.</param>
    public NodeMetrics(StageServer? server, NodeOptions limits, double announcedThroughput, StageTraffic traffic, MeshPeer? peer = null)
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
        var batches = factory.CreateCounter("inferencemesh_node_batches_total", "Batched executor rounds (continuous batching); batched_steps_total over this is the mean batch size.");
        var batched = factory.CreateCounter("inferencemesh_node_batched_steps_total", "Steps and prefill chunks the batched rounds carried.");
        var bySize = factory.CreateCounter("inferencemesh_node_batches_by_size_total", "Batched rounds by size bucket (lower bound of 1, 2-3, 4-7, ...).", "size_from");
        var executorRuns = factory.CreateCounter("inferencemesh_node_executor_batched_runs_total", "Executor runs that carried more than one session (sessions at the same position).");
        var executorRows = factory.CreateCounter("inferencemesh_node_executor_batched_rows_total", "Session steps those executor runs carried.");
        var sent = factory.CreateCounter("inferencemesh_node_stage_bytes_sent_total", "Stage-protocol bytes (whole frames) sent to clients and next hops.");
        var received = factory.CreateCounter("inferencemesh_node_stage_bytes_received_total", "Stage-protocol bytes (whole frames) received from clients and previous hops.");
        var pending = factory.CreateGauge("inferencemesh_p2p_pending_inbound_connections", "Inbound connections accepted and not yet upgraded (multistream, Noise, Yamux).");
        var memory = factory.CreateGauge("inferencemesh_p2p_connection_memory_bytes", "Bytes reserved by open libp2p connections.");
        var hits = factory.CreateCounter("inferencemesh_p2p_limit_hits_total", "Connections or streams refused or closed by a libp2p resource limit.", "limit");
        var connections = factory.CreateGauge("inferencemesh_node_connections", "Open libp2p connections, by path: direct, or relayed through a Circuit Relay v2 relay.", "path");
        var circuits = factory.CreateGauge("inferencemesh_relay_circuits_open", "Circuits this node relays now (0 unless it is a relay).");
        var relayed = factory.CreateCounter("inferencemesh_relay_bytes_total", "Bytes this node relayed over all circuits, both directions (0 unless it is a relay).");
        Registry.AddBeforeCollectCallback(() =>
        {
            if (peer is not null)
            {
                var usage = peer.Host.Usage;
                pending.Set(usage.PendingInbound);
                memory.Set(usage.ConnectionMemory);
                foreach (var limit in Enum.GetValues<Libp2pLimit>())
                    hits.WithLabels(limit.ToString()).IncTo(usage.Hits(limit));
                var open = peer.Host.Connections;
                connections.WithLabels("direct").Set(open.Count(c => !c.IsRelayed));
                connections.WithLabels("relayed").Set(open.Count(c => c.IsRelayed));
                circuits.Set(peer.RelayService?.CircuitCount ?? 0);
                relayed.IncTo(peer.RelayService?.BytesRelayed ?? 0);
            }
            if (server is not null)
            {
                sessions.Set(server.SessionCount);
                reserved.Set(server.ReservedKvBytes);
                steps.IncTo(server.StepsRun);
                positions.IncTo(server.PositionsRun);
                compute.IncTo(server.ComputeTime.TotalSeconds);
                batches.IncTo(server.BatchesRun);
                executorRuns.IncTo(server.ExecutorBatchedRuns);
                executorRows.IncTo(server.ExecutorBatchedRows);
                batched.IncTo(server.BatchedSteps);
                var counts = server.BatchSizeCounts();
                for (var i = 0; i < counts.Length; i++) bySize.WithLabels((1 << i).ToString(System.Globalization.CultureInfo.InvariantCulture)).IncTo(counts[i]);
            }
            sent.IncTo(traffic.BytesSent);
            received.IncTo(traffic.BytesReceived);
        });
    }

    /// <summary>The registry the node's metrics endpoint serves.</summary>
    public CollectorRegistry Registry { get; }
}
