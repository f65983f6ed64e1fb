using System.IO.Pipelines;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Relay;

/// <summary>
/// A relayed circuit (a hop or stop stream on the connection to the relay) seen as a raw transport connection, so
/// the host upgrades it with Noise and Yamux like a TCP one. Its addresses carry <c>/p2p-circuit</c>.
/// </summary>
internal sealed class RelayedTransportConnection(Libp2pStream stream, Multiaddr localAddress, Multiaddr remoteAddress, RelayLimit? limit) : ITransportConnection
{
    private int _disposed;

    public PipeReader Input => stream.Input;
    public PipeWriter Output => stream.Output;
    public Multiaddr LocalAddress { get; } = localAddress;
    public Multiaddr RemoteAddress { get; } = remoteAddress;

    /// <summary>The limit the relay announced for this circuit, or null.</summary>
    public RelayLimit? Limit { get; } = limit;

    /// <summary>The connection to the relay carrying the circuit.</summary>
    public Libp2pConnection RelayConnection => stream.Connection;

    public void Abort() => stream.Reset();

    // The Yamux stream half-closes when its Output is completed, which the caller did before this.
    public void ShutdownWrite() { }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await stream.DisposeAsync().ConfigureAwait(false);
    }
}
