namespace InferenceMesh.Gateway;

/// <summary>Where the gateway listens and how much it takes on at once; every member has a default.</summary>
public sealed record GatewayOptions
{
    /// <summary>URLs to listen on (<c>http://127.0.0.1:0</c> picks a free port; <see cref="MeshGateway.Urls"/> says which).</summary>
    public IReadOnlyList<string> Urls { get; init; } = ["http://127.0.0.1:8080"];

    /// <summary>The model name clients send and <c>/v1/models</c> lists; the model's id (sha256 of its manifest) is accepted too.</summary>
    public string ModelName { get; init; } = "inferencemesh";

    /// <summary>Generations running through the mesh at once.</summary>
    public int MaxConcurrentSessions { get; init; } = 16;

    /// <summary>Requests waiting for a session slot; one more is answered 429.</summary>
    public int MaxQueuedRequests { get; init; } = 32;

    /// <summary>
    /// How long one survey of the swarm (<see cref="Client.MeshClient.GetSwarmAsync"/>) answers <c>/api/swarm</c>, so that
    /// many open health pages cost the mesh one DHT lookup per block per period, not one each.
    /// </summary>
    public TimeSpan SwarmSnapshotLifetime { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Largest request body accepted, in bytes; larger is answered 413 by Kestrel.</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;
}
