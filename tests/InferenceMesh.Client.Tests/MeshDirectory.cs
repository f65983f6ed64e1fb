using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>The in-memory mesh's node list as a client's server directory, with equal speeds and 1 ms round trips (0.5 ms to <paramref name="preferred"/>, which routes then take).</summary>
public sealed class MeshDirectory(InMemoryMesh mesh, string? preferred = null) : IServerDirectory
{
    public int Lists { get; private set; }

    public ValueTask<IReadOnlyList<ServerInfo>> ListAsync(string modelId, CancellationToken cancellation)
    {
        Lists++;
        return ValueTask.FromResult<IReadOnlyList<ServerInfo>>(mesh.Nodes.Select(n => new ServerInfo
        {
            Peer = PeerId.Parse(n.PeerId),
            ModelId = modelId,
            Block = n.Span.Blocks.Start,
            Span = n.Span.Blocks,
            Throughput = 100,
            IssuedAt = DateTimeOffset.UnixEpoch,
            ExpiresAt = DateTimeOffset.MaxValue,
        }).ToList());
    }

    public double RoundTripMs(PeerId server) => server.ToString() == preferred ? 0.5 : 1;
}
