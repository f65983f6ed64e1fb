using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// The receiving half of a <see cref="NoiseSecureChannel"/>: when its reader needs bytes it reads the
/// connection and decrypts every whole transport message there into a plaintext pipe, on the reader's
/// own thread. Reading nothing, it reads nothing from the socket, so backpressure reaches TCP. One reader
/// at a time. A failed authentication or a connection that ends inside a message ends the plaintext with
/// a <see cref="P2PException"/>.
/// </summary>
internal sealed class NoiseTransportReader : PipeReader
{
    private readonly ITransportConnection _conn;
    private readonly CipherState _recv;
    // No pause threshold: how much it holds is bounded by what one connection read decrypts.
    private readonly Pipe _plain;
    private ReadOnlySequence<byte> _lastBuffer;
    private bool _lastFromPlain;
    private bool _needMore = true;
    private bool _inputEnded;

    public NoiseTransportReader(ITransportConnection conn, CipherState recv, MemoryPool<byte> pool)
    {
        _conn = conn;
        _recv = recv;
        _plain = new Pipe(new PipeOptions(pool, pauseWriterThreshold: 0, minimumSegmentSize: 65536, useSynchronizationContext: false));
    }

    public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            if ((!_needMore || _inputEnded) && TryReadPlain(out var ready))
                return ready;
            ReadResult result;
            try
            {
                result = await _conn.Input.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or ObjectDisposedException or InvalidOperationException)
            {
                throw new P2PException(P2PErrorCode.ConnectionClosed, $"connection read failed: {e.Message}", e);
            }
            if (result.IsCanceled)
            {
                _conn.Input.AdvanceTo(result.Buffer.Start);
                if (TryReadPlain(out var held))
                    return new ReadResult(held.Buffer, isCanceled: true, held.IsCompleted);
                _lastFromPlain = false;
                return new ReadResult(default, isCanceled: true, isCompleted: false);
            }
            if (DecryptAvailable(result) > 0)
            {
                await _plain.Writer.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                _needMore = false;
            }
        }
    }

    /// <summary>Decrypts every whole message in <paramref name="result"/>; returns how many.</summary>
    private int DecryptAvailable(ReadResult result)
    {
        var buffer = result.Buffer;
        var messages = 0;
        Exception? error = null;
        try
        {
            while (TryDecryptFrame(ref buffer)) messages++;
            if (result.IsCompleted && !buffer.IsEmpty)
                error = new P2PException(P2PErrorCode.ProtocolViolation, "connection ended inside a Noise message");
        }
        catch (P2PException e)
        {
            error = e;
        }
        _conn.Input.AdvanceTo(buffer.Start, buffer.End);
        if (error is not null || result.IsCompleted)
        {
            _inputEnded = true;
            _plain.Writer.Complete(error);
        }
        return messages;
    }

    private bool TryDecryptFrame(ref ReadOnlySequence<byte> buffer)
    {
        if (buffer.Length < 2)
            return false;
        var len = Noise.ReadU16(buffer);
        if (len < CipherState.TagLength)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Noise transport message of {len} bytes is shorter than its tag");
        if (buffer.Length < 2 + len)
            return false;
        var frame = buffer.Slice(2, len);
        var writer = _plain.Writer;
        var dest = writer.GetSpan(len - CipherState.TagLength);
        bool ok;
        if (frame.IsSingleSegment)
        {
            ok = _recv.Decrypt(default, frame.FirstSpan, dest);
        }
        else
        {
            var tmp = ArrayPool<byte>.Shared.Rent(len);
            try
            {
                frame.CopyTo(tmp);
                ok = _recv.Decrypt(default, tmp.AsSpan(0, len), dest);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(tmp);
            }
        }
        if (!ok)
            throw new P2PException(P2PErrorCode.ProtocolViolation, "Noise transport message failed authentication");
        writer.Advance(len - CipherState.TagLength);
        buffer = buffer.Slice(2 + len);
        return true;
    }

    private bool TryReadPlain(out ReadResult result)
    {
        if (!_plain.Reader.TryRead(out result))
            return false;
        _lastBuffer = result.Buffer;
        _lastFromPlain = true;
        return true;
    }

    public override bool TryRead(out ReadResult result)
    {
        if (!_needMore || _inputEnded)
            return TryReadPlain(out result);
        result = default;
        return false;
    }

    public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

    public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
    {
        if (!_lastFromPlain)
            return;
        // Everything looked at and still not enough: the next read must bring new bytes, not the same ones.
        _needMore = examined.Equals(_lastBuffer.End);
        _lastFromPlain = false;
        _plain.Reader.AdvanceTo(consumed, examined);
    }

    /// <summary>Stops a pending read: it returns with <see cref="ReadResult.IsCanceled"/> set.</summary>
    public override void CancelPendingRead() => _conn.Input.CancelPendingRead();

    public override void Complete(Exception? exception = null) => _plain.Reader.Complete(exception);

    /// <summary>Ends the plaintext pipe so its buffers go back to the pool. The reader must have stopped.</summary>
    internal void Close()
    {
        _plain.Writer.Complete();
        _plain.Reader.Complete();
    }
}
