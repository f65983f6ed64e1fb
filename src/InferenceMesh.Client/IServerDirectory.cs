namespace InferenceMesh.Client;

/// <summary>Where the client learns who serves which blocks (the DHT's span announcements in a real mesh).</summary>
public interface IServerDirectory
{
    /// <summary>Lists the servers announcing blocks of <paramref name="modelId"/>. Safe to cancel.</summary>
    ValueTask<IReadOnlyList<ServerSpan>> ListAsync(string modelId, CancellationToken cancellation);
}
