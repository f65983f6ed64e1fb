using System.IO.Pipelines;
using InferenceMesh.P2P.Muxing;

namespace InferenceMesh.P2P.Hosting;

/// <summary>
/// A negotiated application stream on a <see cref="Libp2pConnection"/>: an <see cref="IDuplexPipe"/> with
/// backpressure (see <see cref="YamuxStream"/>). Complete <see cref="Output"/> to half-close; dispose when done.
/// </summary>
public sealed class Libp2pStream : IDuplexPipe, IAsyncDisposable
{
    private readonly YamuxStream _inner;

    internal Libp2pStream(Libp2pConnection connection, YamuxStream inner, string protocol)
    {
        Connection = connection;
        _inner = inner;
        Protocol = protocol;
    }

    /// <summary>The connection carrying the stream.</summary>
    public Libp2pConnection Connection { get; }

    /// <summary>The protocol id agreed by multistream-select.</summary>
    public string Protocol { get; }

    /// <summary>True if the remote opened it.</summary>
    public bool IsInbound => _inner.IsInbound;

    public PipeReader Input => _inner.Input;
    public PipeWriter Output => _inner.Output;

    /// <summary>Aborts the stream both ways (Yamux RST).</summary>
    public void Reset() => _inner.Reset();

    /// <summary>Half-closes (FIN) if not yet done and stops reading. Not safe to cancel.</summary>
    public ValueTask DisposeAsync() => _inner.DisposeAsync();
}
