using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Client.Tests;

/// <summary>A client's dialer into the in-memory mesh: the stage protocol over pipes, addressed by PeerId.</summary>
public static class InMemoryMeshDialers
{
    public static StageDialer DialerFor(this InMemoryMesh mesh, string client) =>
        (peer, _, cancellation) => mesh.ConnectorFor(client).ConnectAsync(peer.ToString(), [], cancellation);
}
