namespace InferenceMesh.P2P.Transport;

/// <summary>A way to dial and listen on some multiaddrs.</summary>
public interface ITransport
{
    /// <summary>Whether <paramref name="address"/> (with or without <c>/p2p/</c>) is one this transport handles.</summary>
    bool CanHandle(Multiaddr address);

    /// <summary>Opens a raw connection. Safe to cancel (the half-open socket is closed).</summary>
    ValueTask<ITransportConnection> DialAsync(Multiaddr address, CancellationToken cancellationToken);

    /// <summary>Binds a listener. Safe to cancel.</summary>
    ValueTask<ITransportListener> ListenAsync(Multiaddr address, CancellationToken cancellationToken);
}
