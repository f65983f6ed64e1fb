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

    /// <summary>
    /// Every server with an unexpired announcement for <paramref name="modelId"/>, whatever its state, with a round trip
    /// measured now and its connection kind: what a health page shows. This default lists what <see cref="ListAsync"/>
    /// lists with the round trips it kept, and cannot tell connections. Safe to cancel.
    /// </summary>
    async ValueTask<IReadOnlyList<SwarmPeer>> SurveyAsync(string modelId, CancellationToken cancellation) =>
        [.. (await ListAsync(modelId, cancellation).ConfigureAwait(false)).Select(s => new SwarmPeer(s.Peer, s.Addresses, s.Span, s.State, s.Throughput, s.FreeCacheTokens, s.ExpiresAt,
            double.IsFinite(RoundTripMs(s.Peer)) ? RoundTripMs(s.Peer) : null, PeerConnection.Unknown))];
}
