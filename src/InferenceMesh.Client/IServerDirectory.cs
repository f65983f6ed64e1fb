using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Client;

/// <summary>Where the client learns who serves which blocks (the DHT's span records in a real mesh) and how far away they are.</summary>
public interface IServerDirectory
{
    /// <summary>The online servers announcing blocks of <paramref name="modelId"/>, one <see cref="ServerInfo"/> per server. Safe to cancel.</summary>
    ValueTask<IReadOnlyList<ServerInfo>> ListAsync(string modelId, CancellationToken cancellation);

    /// <summary>The round trip to a server <see cref="ListAsync"/> listed, in milliseconds, as measured when it was listed.</summary>
    double RoundTripMs(PeerId server);
}
