using System.Text.Json;
using InferenceMesh.Client;
using InferenceMesh.P2P.Dht;

namespace InferenceMesh.Gateway;

/// <summary>
/// The data behind <c>/api/swarm</c> and the health page at <c>/</c>: one <see cref="MeshClient.GetSwarmAsync"/> answers
/// every request for <see cref="GatewayOptions.SwarmSnapshotLifetime"/>, and only one survey runs at a time.
/// </summary>
internal sealed class SwarmSurvey(MeshClient client, GatewayOptions options) : IDisposable
{
    private const string PageResource = "InferenceMesh.Gateway.Health.swarm.html";

    private readonly SemaphoreSlim _surveying = new(1, 1);
    private Taken? _latest;

    /// <summary>The health page, embedded in the assembly so it ships with the package.</summary>
    public static readonly string Page = LoadPage();

    private static string LoadPage()
    {
        using var stream = typeof(SwarmSurvey).Assembly.GetManifestResourceStream(PageResource)
            ?? throw new InvalidOperationException($"the assembly lacks its embedded resource {PageResource}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>A snapshot no older than the lifetime. Safe to cancel.</summary>
    public async Task<SwarmSnapshot> SnapshotAsync(CancellationToken cancellation)
    {
        if (Fresh() is { } fresh) return fresh;
        await _surveying.WaitAsync(cancellation).ConfigureAwait(false);
        try
        {
            if (Fresh() is { } surveyed) return surveyed;
            var snapshot = await client.GetSwarmAsync(cancellation).ConfigureAwait(false);
            Volatile.Write(ref _latest, new Taken(snapshot, client.Options.Time.GetUtcNow()));
            return snapshot;
        }
        finally
        {
            _surveying.Release();
        }
    }

    private SwarmSnapshot? Fresh() =>
        Volatile.Read(ref _latest) is { } taken && client.Options.Time.GetUtcNow() - taken.At < options.SwarmSnapshotLifetime ? taken.Snapshot : null;

    /// <summary>The snapshot as <c>/api/swarm</c> answers it (snake_case, states and connections as lower-case words).</summary>
    public object Body(SwarmSnapshot snapshot) => new
    {
        model = options.ModelName,
        model_id = snapshot.ModelId,
        block_count = snapshot.BlockCount,
        taken_at = snapshot.TakenAt,
        blocks = snapshot.OnlineServersPerBlock.Select((count, block) => new { block, online_servers = count }),
        peers = snapshot.Peers.Select(p => new
        {
            peer_id = p.Peer.ToString(),
            addresses = p.Addresses.Select(a => a.ToString()),
            blocks = p.Span.ToString(),
            start = p.Span.Start,
            end = p.Span.End,
            state = Word(p.State),
            throughput = p.Throughput,
            free_cache_tokens = p.FreeCacheTokens,
            round_trip_ms = p.RoundTripMs,
            connection = JsonNamingPolicy.SnakeCaseLower.ConvertName(p.Connection.ToString()),
            expires_at = p.ExpiresAt,
        }),
    };

    private static string Word(ServerState state) => JsonNamingPolicy.SnakeCaseLower.ConvertName(state.ToString());

    public void Dispose() => _surveying.Dispose();

    private sealed record Taken(SwarmSnapshot Snapshot, DateTimeOffset At);
}
