using InferenceMesh.Client;
using Prometheus;

namespace InferenceMesh.Gateway;

/// <summary>
/// The gateway's Prometheus metrics (prometheus-net, one registry per gateway, served at <c>/metrics</c>): requests by
/// endpoint and status, prompt and generated tokens, generation time, per-hop step latency, sessions open and
/// requests queued, the mesh client's server replacements, and the stage-protocol bytes it sent and received.
/// </summary>
public sealed class GatewayMetrics
{
    private readonly Counter _requests;
    private readonly Counter _promptTokens;
    private readonly Counter _generatedTokens;
    private readonly Histogram _generationSeconds;
    private readonly Histogram _hopStepSeconds;
    private readonly Counter _recoveries;

    /// <param name="client">The mesh client whose recoveries and traffic are read at each scrape.</param>
    public GatewayMetrics(MeshClient client)
    {
        Registry = Metrics.NewCustomRegistry();
        var factory = Metrics.WithCustomRegistry(Registry);
        _requests = factory.CreateCounter("inferencemesh_gateway_requests_total", "HTTP API requests answered, by endpoint and status code.", "endpoint", "status");
        _promptTokens = factory.CreateCounter("inferencemesh_gateway_prompt_tokens_total", "Prompt tokens of completed generations.");
        _generatedTokens = factory.CreateCounter("inferencemesh_gateway_generated_tokens_total", "Tokens generated through the mesh (rate() of it is tokens/s).");
        _generationSeconds = factory.CreateHistogram("inferencemesh_gateway_generation_seconds", "Time from session opening to the last token, per generation.",
            new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(0.01, 2, 14) });
        _hopStepSeconds = factory.CreateHistogram("inferencemesh_gateway_hop_step_seconds", "Time per step on each hop of a route (one observation of the hop's mean per step it ran), by server.",
            new HistogramConfiguration { LabelNames = ["peer"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 16) });
        _recoveries = factory.CreateCounter("inferencemesh_gateway_recoveries_total", "Servers the mesh client replaced mid-session.");
        SessionsOpen = factory.CreateGauge("inferencemesh_gateway_sessions_open", "Generations running through the mesh now.");
        RequestsQueued = factory.CreateGauge("inferencemesh_gateway_requests_queued", "Requests waiting for a session slot now.");
        var sent = factory.CreateCounter("inferencemesh_gateway_stage_bytes_sent_total", "Stage-protocol bytes (whole frames) the mesh client sent to servers.");
        var received = factory.CreateCounter("inferencemesh_gateway_stage_bytes_received_total", "Stage-protocol bytes (whole frames) the mesh client received from servers.");
        Registry.AddBeforeCollectCallback(() =>
        {
            _recoveries.IncTo(client.Recoveries);
            sent.IncTo(client.Traffic.BytesSent);
            received.IncTo(client.Traffic.BytesReceived);
        });
    }

    /// <summary>The registry <c>/metrics</c> serves.</summary>
    public CollectorRegistry Registry { get; }

    internal Gauge SessionsOpen { get; }
    internal Gauge RequestsQueued { get; }

    internal void Answered(string endpoint, int status) => _requests.WithLabels(endpoint, status.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();

    internal void Generated(GenerationResult result)
    {
        _promptTokens.Inc(result.PromptTokens);
        _generatedTokens.Inc(result.GeneratedTokens);
        _generationSeconds.Observe(result.Elapsed.TotalSeconds);
        foreach (var hop in result.Route.Where(h => h.Steps > 0))
            _hopStepSeconds.WithLabels(hop.PeerId).Observe(hop.MeanLatencyMs / 1000, hop.Steps);
    }
}
