using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Security;

/// <summary>
/// A host's Noise identity: its Ed25519 identity, a static X25519 key and the identity signature over
/// <c>"noise-libp2p-static-key:" ‖ static key</c>, computed once. Thread-safe; dispose with the host.
/// </summary>
public sealed class NoiseIdentity : IDisposable
{
    internal X25519KeyPair Static { get; }
    internal byte[] Signature { get; set; } // settable for hostile-input tests only

    /// <summary>Creates a fresh static key for <paramref name="identity"/> (which stays owned by the caller).</summary>
    public NoiseIdentity(Ed25519KeyPair identity)
    {
        Identity = identity;
        Static = new X25519KeyPair();
        Signature = identity.Sign(Noise.SignedData(Static.PublicKey));
    }

    /// <summary>The identity key this Noise identity signs with.</summary>
    public Ed25519KeyPair Identity { get; }

    public void Dispose() => Static.Dispose();
}

/// <summary>
/// libp2p Noise (<c>/noise</c>): Noise_XX_25519_ChaChaPoly_SHA256 with the libp2p handshake payload
/// (identity key, signature over the static key — verified — and the <c>stream_muxers</c> extension).
/// Messages are framed by a 2-byte big-endian length.
/// </summary>
public static class Noise
{
    /// <summary>The multistream protocol id.</summary>
    public const string ProtocolId = "/noise";

    /// <summary>Largest handshake message accepted, in bytes (real ones are a few hundred).</summary>
    public const int MaxHandshakeMessage = 8192;

    /// <summary>Largest transport message (2-byte length limit), in bytes, tag included.</summary>
    public const int MaxTransportMessage = 65535;

    internal const int DhLength = 32;
    private static readonly byte[] SignaturePrefix = "noise-libp2p-static-key:"u8.ToArray();

    internal static byte[] SignedData(ReadOnlySpan<byte> staticKey)
    {
        var d = new byte[SignaturePrefix.Length + staticKey.Length];
        SignaturePrefix.CopyTo(d, 0);
        staticKey.CopyTo(d.AsSpan(SignaturePrefix.Length));
        return d;
    }

    /// <summary>
    /// Runs the handshake as initiator (dialer) over a raw connection already switched to <c>/noise</c>.
    /// Fails with <see cref="P2PErrorCode.PeerIdMismatch"/> before sending its own identity if
    /// <paramref name="expectedPeer"/> is given and the responder is someone else. Safe to cancel: the
    /// connection must then be disposed by the caller, as after any failure.
    /// </summary>
    public static Task<NoiseSecureChannel> InitiateAsync(ITransportConnection connection, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, PeerId? expectedPeer, MemoryPool<byte>? pool, CancellationToken cancellationToken) =>
        RunAsync(connection, true, local, localMuxers, expectedPeer, pool ?? MemoryPool<byte>.Shared, cancellationToken);

    /// <summary>Runs the handshake as responder (listener). Same cancellation rules as <see cref="InitiateAsync"/>.</summary>
    public static Task<NoiseSecureChannel> RespondAsync(ITransportConnection connection, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, MemoryPool<byte>? pool, CancellationToken cancellationToken) =>
        RunAsync(connection, false, local, localMuxers, null, pool ?? MemoryPool<byte>.Shared, cancellationToken);

    private static async Task<NoiseSecureChannel> RunAsync(ITransportConnection conn, bool initiator, NoiseIdentity local,
        IReadOnlyList<string> localMuxers, PeerId? expectedPeer, MemoryPool<byte> pool, CancellationToken ct)
    {
        using var ss = new SymmetricState();
        using var e = new X25519KeyPair();
        var payload = EncodePayload(local, localMuxers);
        byte[] re, rs;
        HandshakePayload remote;
        if (initiator)
        {
            // -> e
            ss.MixHash(e.PublicKey);
            var m1 = Concat(e.PublicKey, ss.EncryptAndHash(ReadOnlySpan<byte>.Empty));
            await WriteFrameAsync(conn.Output, m1, ct).ConfigureAwait(false);
            // <- e, ee, s, es, payload
            var m2 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m2.Length < DhLength + DhLength + CipherState.TagLength + CipherState.TagLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 2 of {m2.Length} bytes is too short");
            re = m2[..DhLength];
            ss.MixHash(re);
            ss.MixKey(e.Agree(re));
            rs = ss.DecryptAndHash(m2.AsSpan(DhLength, DhLength + CipherState.TagLength));
            ss.MixKey(e.Agree(rs));
            remote = DecodeAndVerify(ss.DecryptAndHash(m2.AsSpan(DhLength + DhLength + CipherState.TagLength)), rs);
            if (expectedPeer is not null && remote.PeerId != expectedPeer)
                throw new P2PException(P2PErrorCode.PeerIdMismatch, $"dialled {expectedPeer} but the remote is {remote.PeerId}");
            // -> s, se, payload
            var c1 = ss.EncryptAndHash(local.Static.PublicKey);
            ss.MixKey(local.Static.Agree(re));
            var m3 = Concat(c1, ss.EncryptAndHash(payload));
            await WriteFrameAsync(conn.Output, m3, ct).ConfigureAwait(false);
        }
        else
        {
            // -> e
            var m1 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m1.Length < DhLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 1 of {m1.Length} bytes is too short");
            re = m1[..DhLength];
            ss.MixHash(re);
            ss.DecryptAndHash(m1.AsSpan(DhLength)); // payload of message 1 is unauthenticated and ignored
            // <- e, ee, s, es, payload
            ss.MixHash(e.PublicKey);
            ss.MixKey(e.Agree(re));
            var c1 = ss.EncryptAndHash(local.Static.PublicKey);
            ss.MixKey(local.Static.Agree(re));
            var m2 = Concat(Concat(e.PublicKey, c1), ss.EncryptAndHash(payload));
            await WriteFrameAsync(conn.Output, m2, ct).ConfigureAwait(false);
            // -> s, se, payload
            var m3 = await ReadFrameAsync(conn.Input, ct).ConfigureAwait(false);
            if (m3.Length < DhLength + CipherState.TagLength + CipherState.TagLength)
                throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise message 3 of {m3.Length} bytes is too short");
            rs = ss.DecryptAndHash(m3.AsSpan(0, DhLength + CipherState.TagLength));
            ss.MixKey(e.Agree(rs));
            remote = DecodeAndVerify(ss.DecryptAndHash(m3.AsSpan(DhLength + CipherState.TagLength)), rs);
        }
        var muxer = SelectMuxer(initiator, localMuxers, remote.Muxers);
        var (c1s, c2s) = ss.Split();
        var (send, recv) = initiator ? (c1s, c2s) : (c2s, c1s);
        return new NoiseSecureChannel(conn, send, recv, remote.PeerId, remote.Muxers, muxer, pool);
    }

    /// <summary>
    /// Early muxer choice: when both lists are non-empty, the first of the initiator's list the responder
    /// also lists (inlined-muxer-negotiation spec); when only one side lists muxers, the first of that
    /// list that this side supports (as js-libp2p does); null when both are empty (negotiate over multistream).
    /// </summary>
    internal static string? SelectMuxer(bool initiator, IReadOnlyList<string> local, IReadOnlyList<string> remote)
    {
        if (local.Count == 0 && remote.Count == 0)
            return null;
        var (first, second) = initiator ? (local, remote) : (remote, local);
        if (first.Count == 0) (first, second) = (second, first);
        var supported = second.Count > 0 ? second : MuxerSupport;
        foreach (var m in first)
            if (supported.Contains(m) && MuxerSupport.Contains(m))
                return m;
        throw new P2PException(P2PErrorCode.HandshakeFailed,
            $"early muxer negotiation: no common muxer between [{string.Join(", ", local)}] and [{string.Join(", ", remote)}]");
    }

    internal static readonly IReadOnlyList<string> MuxerSupport = [Muxing.YamuxSession.ProtocolId];

    internal sealed record HandshakePayload(PeerId PeerId, byte[] IdentityKey, IReadOnlyList<string> Muxers);

    private static byte[] EncodePayload(NoiseIdentity local, IReadOnlyList<string> muxers)
    {
        var w = new ProtoWriter();
        w.WriteBytes(1, local.Identity.PublicKeyProtobuf);
        w.WriteBytes(2, local.Signature);
        if (muxers.Count > 0)
        {
            var ext = new ProtoWriter();
            foreach (var m in muxers) ext.WriteString(2, m);
            w.WriteBytes(4, ext.ToArray());
        }
        return w.ToArray();
    }

    internal static HandshakePayload DecodeAndVerify(ReadOnlySpan<byte> payload, ReadOnlySpan<byte> remoteStatic)
    {
        byte[]? key = null, sig = null;
        var muxers = new List<string>();
        try
        {
            var r = new ProtoReader(payload);
            while (r.TryReadTag(out var f))
            {
                switch (f)
                {
                    case 1: key = r.ReadBytes().ToArray(); break;
                    case 2: sig = r.ReadBytes().ToArray(); break;
                    case 4:
                        var ext = new ProtoReader(r.ReadBytes());
                        while (ext.TryReadTag(out var ef))
                        {
                            if (ef == 2)
                            {
                                if (muxers.Count >= 16)
                                    throw new P2PException(P2PErrorCode.LimitExceeded, "Noise payload lists more than 16 muxers");
                                muxers.Add(ext.ReadString());
                            }
                            else ext.Skip();
                        }
                        break;
                    default: r.Skip(); break;
                }
            }
        }
        catch (P2PException ex) when (ex.P2PCode == P2PErrorCode.InvalidEncoding)
        {
            throw new P2PException(P2PErrorCode.HandshakeFailed, $"malformed Noise handshake payload: {ex.Message}", ex);
        }
        if (key is null || sig is null)
            throw new P2PException(P2PErrorCode.HandshakeFailed, "Noise handshake payload lacks identity key or signature");
        byte[] raw;
        try
        {
            raw = Libp2pKeys.DecodeEd25519PublicKey(key);
        }
        catch (P2PException ex)
        {
            throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise identity key rejected: {ex.Message}", ex);
        }
        if (!Libp2pKeys.VerifyEd25519(raw, SignedData(remoteStatic), sig))
            throw new P2PException(P2PErrorCode.HandshakeFailed, "Noise identity signature over the static key is invalid");
        return new HandshakePayload(PeerId.FromPublicKeyProtobuf(key), key, muxers);
    }

    private static byte[] Concat(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        var r = new byte[a.Length + b.Length];
        a.CopyTo(r);
        b.CopyTo(r.AsSpan(a.Length));
        return r;
    }

    private static async ValueTask WriteFrameAsync(PipeWriter w, byte[] message, CancellationToken ct)
    {
        var span = w.GetSpan(2 + message.Length);
        BinaryPrimitives.WriteUInt16BigEndian(span, checked((ushort)message.Length));
        message.CopyTo(span[2..]);
        w.Advance(2 + message.Length);
        var r = await w.FlushAsync(ct).ConfigureAwait(false);
        if (r.IsCompleted || r.IsCanceled)
            throw new P2PException(P2PErrorCode.HandshakeFailed, "connection closed during the Noise handshake");
    }

    internal static int ReadU16(in ReadOnlySequence<byte> buffer)
    {
        Span<byte> lb = stackalloc byte[2];
        buffer.Slice(0, 2).CopyTo(lb);
        return BinaryPrimitives.ReadUInt16BigEndian(lb);
    }

    private static async ValueTask<byte[]> ReadFrameAsync(PipeReader reader, CancellationToken ct)
    {
        while (true)
        {
            var result = await reader.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (buffer.Length >= 2)
                {
                    int len = ReadU16(buffer);
                    if (len > MaxHandshakeMessage)
                        throw new P2PException(P2PErrorCode.HandshakeFailed, $"Noise handshake message of {len} bytes exceeds {MaxHandshakeMessage}");
                    if (buffer.Length >= 2 + len)
                    {
                        var msg = buffer.Slice(2, len).ToArray();
                        consumed = examined = buffer.GetPosition(2 + len);
                        return msg;
                    }
                }
                if (result.IsCompleted || result.IsCanceled)
                    throw new P2PException(P2PErrorCode.HandshakeFailed, "connection closed during the Noise handshake (truncated message)");
            }
            finally
            {
                reader.AdvanceTo(consumed, examined);
            }
        }
    }
}

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
