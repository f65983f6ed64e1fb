using InferenceMesh.P2P.Dht;

namespace InferenceMesh.Client;

/// <summary>Who serves which blocks of a model, as <see cref="MeshClient.GetSwarmAsync"/> found it (Petals' health page, as data).</summary>
/// <param name="Peers">Every server with an unexpired announcement, in any state, ordered by its first block.</param>
public sealed record SwarmSnapshot(string ModelId, int BlockCount, DateTimeOffset TakenAt, IReadOnlyList<SwarmPeer> Peers)
{
    /// <summary>For each block, how many listed servers announce it online; a zero is a block no route can cross.</summary>
    public IReadOnlyList<int> OnlineServersPerBlock =>
        [.. Enumerable.Range(0, BlockCount).Select(b => Peers.Count(p => p.State == ServerState.Online && p.Span.Contains(b)))];
}
