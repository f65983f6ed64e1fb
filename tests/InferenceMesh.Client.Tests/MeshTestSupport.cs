using InferenceMesh.Client;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>The in-memory mesh's node list as a client's server directory, with equal speeds and round trips.</summary>
public sealed class MeshDirectory(InMemoryMesh mesh) : IServerDirectory
{
    public int Lists { get; private set; }

    public ValueTask<IReadOnlyList<ServerSpan>> ListAsync(string modelId, CancellationToken cancellation)
    {
        Lists++;
        return ValueTask.FromResult<IReadOnlyList<ServerSpan>>(mesh.Nodes.Select(n => new ServerSpan(n.PeerId, [], n.Span.Blocks, 100, 1)).ToList());
    }
}
