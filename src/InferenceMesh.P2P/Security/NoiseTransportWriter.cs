using System.Buffers.Binary;
using System.IO.Pipelines;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// The sending half of a <see cref="NoiseSecureChannel"/>: buffers plaintext and, on flush, seals it into
/// transport messages of at most 65,519 plaintext bytes written straight into the connection's writer.
/// One writer at a time, as for any <see cref="PipeWriter"/>. Socket failures surface as
/// <see cref="P2PException"/> (ConnectionClosed).
/// </summary>
internal sealed class NoiseTransportWriter : PipeWriter
{
    private const int MaxPlaintext = Noise.MaxTransportMessage - CipherState.TagLength;
    private readonly ITransportConnection _conn;
    private readonly CipherState _send;
    // Guards the cipher and the completed flag: completing from CloseAsync may race a late writer.
    private readonly Lock _sync = new();
    // Not pooled: a late writer after close must never scribble on a buffer someone else now holds.
    private byte[] _plain = new byte[MaxPlaintext];
    private int _buffered;
    private volatile bool _completed;

    public NoiseTransportWriter(ITransportConnection conn, CipherState send)
    {
        _conn = conn;
        _send = send;
    }

    public override Memory<byte> GetMemory(int sizeHint = 0)
    {
        EnsureRoom(Math.Max(sizeHint, 1));
        return _plain.AsMemory(_buffered);
    }

    public override Span<byte> GetSpan(int sizeHint = 0)
    {
        EnsureRoom(Math.Max(sizeHint, 1));
        return _plain.AsSpan(_buffered);
    }

    public override void Advance(int bytes)
    {
        if ((uint)bytes > (uint)(_plain.Length - _buffered))
            throw new ArgumentOutOfRangeException(nameof(bytes), "advanced past the buffer");
        _buffered += bytes;
    }

    private void EnsureRoom(int sizeHint)
    {
        if (_completed)
            throw new P2PException(P2PErrorCode.ConnectionClosed, "Noise channel closed");
        if (_plain.Length - _buffered >= sizeHint)
            return;
        if (_buffered > 0)
            Seal();
        if (_plain.Length < sizeHint)
        {
            // A caller asked for one span larger than a message: Seal cuts it into several.
            _plain = new byte[sizeHint];
        }
    }

    /// <summary>Encrypts everything buffered into the connection's writer, without flushing it.</summary>
    private void Seal()
    {
        lock (_sync)
        {
            if (_completed)
                throw new P2PException(P2PErrorCode.ConnectionClosed, "Noise channel closed");
            try
            {
                var output = _conn.Output;
                for (var offset = 0; offset < _buffered;)
                {
                    var n = Math.Min(_buffered - offset, MaxPlaintext);
                    var span = output.GetSpan(2 + n + CipherState.TagLength);
                    BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)(n + CipherState.TagLength));
                    _send.Encrypt(default, _plain.AsSpan(offset, n), span[2..]);
                    output.Advance(2 + n + CipherState.TagLength);
                    offset += n;
                }
            }
            catch (InvalidOperationException e)
            {
                throw new P2PException(P2PErrorCode.ConnectionClosed, "connection closed", e);
            }
            _buffered = 0;
        }
    }

    public override async ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
    {
        if (_buffered > 0)
            Seal();
        try
        {
            var result = await _conn.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            return new FlushResult(result.IsCanceled, result.IsCompleted);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
            throw new P2PException(P2PErrorCode.ConnectionClosed, $"connection write failed: {e.Message}", e);
        }
    }

    public override void CancelPendingFlush()
    {
        if (_completed)
            return;
        // A socket writer completed meanwhile has disposed what cancels its flush: nothing is pending then.
        try { _conn.Output.CancelPendingFlush(); }
        catch (ObjectDisposedException) { }
    }

    /// <summary>
    /// Seals what is buffered and ends the write side: the remote reads EOF after it. What is left goes out
    /// with a blocking socket write; <see cref="CompleteAsync"/> bounds the wait instead.
    /// </summary>
    public override void Complete(Exception? exception = null)
    {
        if (_buffered > 0 && !_completed)
        {
            try { Seal(); }
            catch (P2PException) { /* the connection is gone; nothing to send it on */ }
        }
        if (!MarkCompleted())
            return;
        CompleteConnectionOutput(null);
    }

    /// <summary>Sends what is buffered for up to a second, then ends the write side; a remote that does not read is cut off.</summary>
    public override ValueTask CompleteAsync(Exception? exception = null) => DrainAndCompleteAsync(TimeSpan.FromSeconds(1));

    private bool MarkCompleted()
    {
        lock (_sync)
        {
            if (_completed) return false;
            _completed = true;
            _buffered = 0;
            return true;
        }
    }

    /// <param name="failed">
    /// Why the last flush failed, or null. The socket writer's Complete writes what it still holds and, should
    /// that write fail, keeps its pooled buffers; completing it with the failure discards them instead.
    /// </param>
    private void CompleteConnectionOutput(Exception? failed)
    {
        try
        {
            _conn.Output.Complete(failed);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
        {
        }
        _conn.ShutdownWrite();
    }

    /// <summary>
    /// Sends what is still buffered, waiting at most <paramref name="timeout"/> for the connection to take
    /// it (then aborting the connection), and ends the write side. The owner must have stopped writing.
    /// </summary>
    internal async ValueTask DrainAndCompleteAsync(TimeSpan timeout)
    {
        if (_completed)
            return;
        var flush = FlushAsync().AsTask();
        Exception? failed = null;
        try
        {
            var result = await flush.WaitAsync(timeout).ConfigureAwait(false);
            if (result.IsCanceled || result.IsCompleted)
                failed = new P2PException(P2PErrorCode.ConnectionClosed, "connection closed before the last bytes were sent");
        }
        catch (TimeoutException e)
        {
            // The remote does not read: give up on it rather than hold the close.
            failed = e;
            CancelPendingFlush();
            _conn.Abort();
        }
        catch (P2PException e)
        {
            failed = e; // the connection is already gone
        }
        try { await flush.ConfigureAwait(false); }
        catch (P2PException) { }
        if (MarkCompleted())
            CompleteConnectionOutput(failed);
    }
}
