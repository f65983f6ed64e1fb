using System.IO.Pipelines;

namespace InferenceMesh.P2P.Transport;

/// <summary>A raw, unauthenticated byte connection from a transport (TCP, in-memory).</summary>
/// <remarks>
/// The layer above owns the pipes: it completes <see cref="IDuplexPipe.Input"/> and
/// <see cref="IDuplexPipe.Output"/> when done. <see cref="IAsyncDisposable.DisposeAsync"/> closes the
/// underlying socket (unblocking pending I/O) and completes whatever pipe is still open; call it
/// only once no read or flush is pending on another task.
/// </remarks>
public interface ITransportConnection : IDuplexPipe, IAsyncDisposable
{
    /// <summary>This side's address.</summary>
    Multiaddr LocalAddress { get; }

    /// <summary>The remote side's address (observed, without <c>/p2p/</c>).</summary>
    Multiaddr RemoteAddress { get; }

    /// <summary>Stops I/O at once without completing the pipes; pending reads end with an error or EOF.</summary>
    void Abort();

    /// <summary>Half-closes: tells the remote no more bytes follow (TCP FIN), after <see cref="IDuplexPipe.Output"/> was completed.</summary>
    void ShutdownWrite();
}
