namespace InferenceMesh.P2P.Dht;

/// <summary>
/// How a <see cref="KadDht"/> reaches other peers: one request, one response, over whatever carries it
/// (Yamux streams on <c>/inferencemesh/kad/1.0.0</c> or <c>/ipfs/kad/1.0.0</c> in production, an in-memory
/// network with virtual time in the simulator). Implementations must be thread-safe.
/// </summary>
public interface IKadNetwork
{
    /// <summary>
    /// Sends <paramref name="request"/> to <paramref name="peer"/> (dialling its addresses when needed) and
    /// returns its response. Throws <see cref="DhtException"/> (Unreachable) when the peer cannot be reached
    /// or does not answer within <paramref name="timeout"/>, (InvalidMessage/LimitExceeded) on a bad
    /// response. Safe to cancel: throws <see cref="OperationCanceledException"/>.
    /// </summary>
    Task<KadMessage> SendRequestAsync(KadPeer peer, KadMessage request, TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>
    /// Sends a message that has no response (ADD_PROVIDER). Same errors as <see cref="SendRequestAsync"/>;
    /// safe to cancel.
    /// </summary>
    Task SendMessageAsync(KadPeer peer, KadMessage message, TimeSpan timeout, CancellationToken cancellationToken);
}
