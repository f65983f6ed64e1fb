namespace InferenceMesh.P2P.Transport;

/// <summary>A bound listener accepting raw connections.</summary>
public interface ITransportListener : IAsyncDisposable
{
    /// <summary>The bound address (with the real port when <c>tcp/0</c> was asked for).</summary>
    Multiaddr ListenAddress { get; }

    /// <summary>Waits for the next inbound connection. Safe to cancel; throws <see cref="P2PException"/> (ConnectionClosed) once disposed.</summary>
    ValueTask<ITransportConnection> AcceptAsync(CancellationToken cancellationToken);
}
