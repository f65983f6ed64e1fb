using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// An authenticated, encrypted duplex pipe over a raw connection, after a Noise handshake. Plaintext
/// written to <see cref="Output"/> is cut into transport messages of at most 65,519 bytes; inbound
/// messages are decrypted into <see cref="Input"/>. A message that fails authentication ends
/// <see cref="Input"/> with a <see cref="P2PException"/> (ProtocolViolation). There are no pumps: plaintext
/// is encrypted on the writer's thread when it flushes and decrypted on the reader's thread when it reads,
/// which saves two thread hops per message. Each side takes one reader and one writer at a time.
/// </summary>
public sealed class NoiseSecureChannel : IDuplexPipe, IAsyncDisposable
{
    private readonly ITransportConnection _conn;
    private readonly CipherState _send;
    private readonly CipherState _recv;
    private readonly NoiseTransportReader _inbound;
    private readonly NoiseTransportWriter _outbound;
    private int _disposed;

    internal NoiseSecureChannel(ITransportConnection conn, CipherState send, CipherState recv, PeerId remotePeer,
        IReadOnlyList<string> remoteMuxers, string? selectedMuxer, MemoryPool<byte> pool)
    {
        _conn = conn;
        _send = send;
        _recv = recv;
        RemotePeer = remotePeer;
        RemoteMuxers = remoteMuxers;
        SelectedMuxer = selectedMuxer;
        _inbound = new NoiseTransportReader(conn, recv, pool);
        _outbound = new NoiseTransportWriter(conn, send);
    }

    /// <summary>The authenticated remote PeerId.</summary>
    public PeerId RemotePeer { get; }

    /// <summary>The muxers the remote listed in its handshake payload.</summary>
    public IReadOnlyList<string> RemoteMuxers { get; }

    /// <summary>The muxer chosen by the handshake's extension, or null when it must be negotiated over multistream.</summary>
    public string? SelectedMuxer { get; }

    /// <summary>The underlying raw connection's addresses.</summary>
    public ITransportConnection Transport => _conn;

    public PipeReader Input => _inbound;
    public PipeWriter Output => _outbound;

    /// <summary>
    /// Closes the channel: lets queued plaintext drain for up to <paramref name="drainTimeout"/>
    /// (default 1 s), then closes the connection. The owner of <see cref="Input"/> and <see cref="Output"/>
    /// must have completed them or stopped using them. Not safe to cancel.
    /// </summary>
    public async ValueTask CloseAsync(TimeSpan? drainTimeout = null)
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        await _outbound.DrainAndCompleteAsync(drainTimeout ?? TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        _conn.Abort();
        _inbound.Close();
        await _conn.DisposeAsync().ConfigureAwait(false);
        _send.Dispose();
        _recv.Dispose();
    }

    /// <summary>Same as <see cref="CloseAsync"/> with the default drain time.</summary>
    public ValueTask DisposeAsync() => CloseAsync();
}
