namespace InferenceMesh.Protocol;

/// <summary>Opens stage channels to peers: over libp2p streams in a real mesh, over in-memory pipes in tests and benchmarks.</summary>
public interface IStageConnector
{
    /// <summary>Opens a new stage stream to <paramref name="peerId"/>. Safe to cancel.</summary>
    ValueTask<StageChannel> ConnectAsync(string peerId, IReadOnlyList<string> addresses, CancellationToken cancellation);
}
