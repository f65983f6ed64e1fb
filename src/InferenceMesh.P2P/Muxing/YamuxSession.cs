using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Threading.Channels;

namespace InferenceMesh.P2P.Muxing;

/// <summary>
/// A Yamux session (hashicorp/yamux spec, <c>/yamux/1.0.0</c>) over any duplex pipe: streams with
/// SYN/ACK/FIN/RST, per-stream flow control from 256 KiB windows, ping and GoAway, with limits on
/// concurrent and unacknowledged streams. One task reads frames; control frames are queued and
/// written by a second task so the reader never waits on the network; each stream has a send pump.
/// A protocol violation ends the session with GoAway(protocol error), one log line, and a
/// <see cref="P2PException"/> in <see cref="Completion"/>.
/// </summary>
public sealed class YamuxSession : IAsyncDisposable
{
    /// <summary>The multistream protocol id.</summary>
    public const string ProtocolId = "/yamux/1.0.0";

    private readonly IDuplexPipe _pipe;
    private readonly ConcurrentDictionary<uint, YamuxStream> _streams = new();
    private readonly ConcurrentDictionary<uint, (TaskCompletionSource<bool> Tcs, long Started)> _pings = new();
    private readonly Channel<YamuxStream> _accept = Channel.CreateUnbounded<YamuxStream>();
    private readonly Channel<YamuxHeader> _control = Channel.CreateUnbounded<YamuxHeader>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly SemaphoreSlim _unacked;
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _readLoop = Task.CompletedTask;
    private Task _controlLoop = Task.CompletedTask;
    private uint _nextStreamId;
    private int _queuedControl;
    private int _pingId;
    private int _streamCount;
    private readonly TimeProvider _time;
    // Timestamp (of _time) of the last stream opened or closed: how long the session has been idle.
    private long _lastStreamChange;
    private volatile bool _remoteGoAway;
    // Set under the write lock once our GoAway is written: it must be the last frame the remote sees.
    private bool _goAwaySent;
    private volatile bool _closed;
    private int _disposed;
    private int _started;
    private Exception? _error;

    // Data frame being delivered across reads.
    private YamuxStream? _dataStream;
    private uint _dataRemaining;
    private YamuxFlags _dataFlags;

    /// <param name="pipe">The secured connection; the session completes both sides when it ends.</param>
    /// <param name="isClient">True on the dialing side (odd stream ids), false on the listening side (even).</param>
    public YamuxSession(IDuplexPipe pipe, bool isClient, YamuxOptions? options = null)
    {
        Options = options ?? new YamuxOptions();
        Options.Validate();
        _pipe = pipe;
        IsClient = isClient;
        _nextStreamId = isClient ? 1u : 2u;
        _unacked = new SemaphoreSlim(Options.MaxUnackedOutboundStreams, Options.MaxUnackedOutboundStreams);
        Pool = Options.Pool ?? MemoryPool<byte>.Shared;
        _time = Options.Time ?? TimeProvider.System;
        _lastStreamChange = _time.GetTimestamp();
    }

    /// <summary>The options in force.</summary>
    public YamuxOptions Options { get; }

    /// <summary>True on the dialing side.</summary>
    public bool IsClient { get; }

    /// <summary>Called (on the read loop) for each inbound stream refused because <see cref="YamuxOptions.MaxConcurrentStreams"/> are open: the host counts and logs it.</summary>
    internal Action? StreamRefused { get; set; }

    internal MemoryPool<byte> Pool { get; }

    /// <summary>Streams currently open (either direction).</summary>
    public int StreamCount => Volatile.Read(ref _streamCount);

    /// <summary>How long the session has had no open stream: zero while one is open, else the time since the last one closed (or since the session began).</summary>
    public TimeSpan IdleTime => StreamCount > 0 ? TimeSpan.Zero : _time.GetElapsedTime(Volatile.Read(ref _lastStreamChange));

    /// <summary>True once the remote sent GoAway or the session ended: no new stream can be opened on it.</summary>
    public bool IsGoingAway => _remoteGoAway || _closed;

    /// <summary>Completes when the session has ended: successfully after a clean close, faulted with the reason otherwise.</summary>
    public Task Completion => _completion.Task;

    /// <summary>True once the session no longer carries streams.</summary>
    public bool IsClosed => _closed;

    /// <summary>Starts the read and control-write loops. Call once.</summary>
    public void Start()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0)
            throw new InvalidOperationException("Yamux session already started");
        _readLoop = Task.Run(ReadLoopAsync);
        _controlLoop = Task.Run(ControlLoopAsync);
    }

    /// <summary>
    /// Opens an outbound stream: sends SYN (a window update) and returns without waiting for the ACK. Waits,
    /// cancellably, while <see cref="YamuxOptions.MaxUnackedOutboundStreams"/> streams are unacknowledged.
    /// Throws <see cref="P2PException"/> (LimitExceeded) at the concurrent-stream limit, (ConnectionClosed)
    /// once the session or remote is going away.
    /// </summary>
    public async Task<YamuxStream> OpenStreamAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        await _unacked.WaitAsync(cancellationToken).ConfigureAwait(false);
        YamuxStream? stream = null;
        try
        {
            ThrowIfClosed();
            if (Interlocked.Increment(ref _streamCount) > Options.MaxConcurrentStreams)
            {
                Interlocked.Decrement(ref _streamCount);
                throw new P2PException(P2PErrorCode.LimitExceeded, $"Yamux: {Options.MaxConcurrentStreams} streams already open");
            }
            MarkStreamChange();
            // Ids are taken and SYNs written under the write lock, so SYNs leave in id order.
            await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var id = _nextStreamId;
                if (id > uint.MaxValue - 2)
                {
                    Interlocked.Decrement(ref _streamCount);
                    throw new P2PException(P2PErrorCode.LimitExceeded, "Yamux stream ids exhausted");
                }
                _nextStreamId += 2;
                stream = new YamuxStream(this, id, inbound: false);
                _streams[id] = stream;
                await WriteLockedAsync(new YamuxHeader(0, YamuxFrameType.WindowUpdate, YamuxFlags.Syn, id, 0), default).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stream is null)
            {
                Interlocked.Decrement(ref _streamCount);
                throw;
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception e)
        {
            if (stream is null)
                _unacked.Release();
            else
                stream.OnReset(e as P2PException ?? new P2PException(P2PErrorCode.ConnectionClosed, "Yamux: could not send SYN", e), sendRst: false);
            throw;
        }
        stream.StartPump();
        return stream;
    }

    /// <summary>Waits for the next inbound stream. Safe to cancel. Throws <see cref="P2PException"/> (ConnectionClosed) once the session ended.</summary>
    public async ValueTask<YamuxStream> AcceptStreamAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await _accept.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException e)
        {
            throw new P2PException(P2PErrorCode.ConnectionClosed, "Yamux session closed", _error ?? e);
        }
    }

    /// <summary>Sends a Yamux ping and returns the round-trip time. Safe to cancel.</summary>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfClosed();
        var id = (uint)Interlocked.Increment(ref _pingId);
        var tcs = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = Stopwatch.GetTimestamp();
        _pings[id] = (tcs, started);
        try
        {
            EnqueueControl(new YamuxHeader(0, YamuxFrameType.Ping, YamuxFlags.Syn, 0, id));
            await tcs.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            return Stopwatch.GetElapsedTime(started);
        }
        finally
        {
            _pings.TryRemove(id, out _);
        }
    }

    private void ThrowIfClosed()
    {
        if (_closed)
            throw new P2PException(P2PErrorCode.ConnectionClosed, _error is null ? "Yamux session closed" : $"Yamux session closed: {_error.Message}", _error);
        if (_remoteGoAway)
            throw new P2PException(P2PErrorCode.ConnectionClosed, "Yamux: remote sent GoAway");
    }

    // ---------------- reading ----------------

    private async Task ReadLoopAsync()
    {
        var input = _pipe.Input;
        Exception? error = null;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync().ConfigureAwait(false);
                var buffer = result.Buffer;
                try
                {
                    if (result.IsCanceled)
                        break;
                    while (ProcessFrame(ref buffer)) { }
                    if (result.IsCompleted)
                    {
                        if (!buffer.IsEmpty || _dataRemaining > 0)
                            error = new P2PException(P2PErrorCode.ProtocolViolation, "Yamux: connection ended inside a frame");
                        break;
                    }
                }
                finally
                {
                    input.AdvanceTo(buffer.Start, buffer.End);
                }
            }
        }
        catch (Exception e)
        {
            error = e;
        }
        await input.CompleteAsync().ConfigureAwait(false);
        if (error is P2PException { P2PCode: P2PErrorCode.ProtocolViolation or P2PErrorCode.LimitExceeded } pe)
        {
            Options.Log?.Invoke($"yamux: closing session: {pe.Message}");
            await TrySendGoAwayAsync(YamuxGoAwayCode.ProtocolError).ConfigureAwait(false);
        }
        else if (error is not null && error is not P2PException)
        {
            error = new P2PException(P2PErrorCode.ConnectionClosed, $"Yamux: connection failed: {error.Message}", error);
        }
        await ShutdownAsync(error).ConfigureAwait(false);
    }

    /// <summary>Handles at most one header or one piece of data payload; false when more bytes are needed.</summary>
    private bool ProcessFrame(ref ReadOnlySequence<byte> buffer)
    {
        if (_dataRemaining > 0)
        {
            if (buffer.IsEmpty)
                return false;
            var n = (int)Math.Min(buffer.Length, _dataRemaining);
            var payload = buffer.Slice(0, n);
            _dataStream?.OnData(payload);
            buffer = buffer.Slice(n);
            _dataRemaining -= (uint)n;
            if (_dataRemaining == 0)
                FinishData();
            return true;
        }
        if (buffer.Length < YamuxHeader.Size)
            return false;
        Span<byte> hb = stackalloc byte[YamuxHeader.Size];
        buffer.Slice(0, YamuxHeader.Size).CopyTo(hb);
        buffer = buffer.Slice(YamuxHeader.Size);
        var h = YamuxHeader.Read(hb);
        if (h.Version != 0)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: unsupported version {h.Version}");
        switch (h.Type)
        {
            case YamuxFrameType.Data:
            case YamuxFrameType.WindowUpdate:
                OnStreamFrame(h);
                break;
            case YamuxFrameType.Ping:
                if (h.StreamId != 0)
                    throw new P2PException(P2PErrorCode.ProtocolViolation, "Yamux: ping on a stream id other than 0");
                if ((h.Flags & YamuxFlags.Syn) != 0)
                    EnqueueControl(new YamuxHeader(0, YamuxFrameType.Ping, YamuxFlags.Ack, 0, h.Length));
                else if ((h.Flags & YamuxFlags.Ack) != 0 && _pings.TryRemove(h.Length, out var p))
                    p.Tcs.TrySetResult(true);
                break;
            case YamuxFrameType.GoAway:
                _remoteGoAway = true;
                if (h.Length != (uint)YamuxGoAwayCode.Normal)
                    Options.Log?.Invoke($"yamux: remote sent GoAway with error code {h.Length}");
                break;
            default:
                throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: unknown frame type {(byte)h.Type}");
        }
        return true;
    }

    private void OnStreamFrame(YamuxHeader h)
    {
        if (h.StreamId == 0)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: {h.Type} frame on stream id 0");
        YamuxStream? stream;
        if ((h.Flags & YamuxFlags.Syn) != 0)
        {
            stream = OnRemoteSyn(h.StreamId);
        }
        else if (!_streams.TryGetValue(h.StreamId, out stream))
        {
            stream = null; // late frame for a stream already gone: discard
        }
        // Any frame on an outbound stream means the remote took it: our ACK may be queued behind its data.
        if (stream is not null && ((h.Flags & YamuxFlags.Ack) != 0 || !stream.IsInbound))
            stream.OnAck();
        if (h.Type == YamuxFrameType.WindowUpdate)
        {
            stream?.OnWindowUpdate(h.Length);
            if (stream is not null) ApplyCloseFlags(stream, h.Flags);
            return;
        }
        // Data
        if (stream is not null)
            stream.ReserveReceive(h.Length);
        else if (h.Length > Options.MaxStreamWindow)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: data frame of {h.Length} bytes exceeds any window");
        _dataStream = stream;
        _dataRemaining = h.Length;
        _dataFlags = h.Flags;
        if (h.Length == 0)
            FinishData();
    }

    private void FinishData()
    {
        if (_dataStream is not null)
            ApplyCloseFlags(_dataStream, _dataFlags);
        _dataStream = null;
    }

    private static void ApplyCloseFlags(YamuxStream stream, YamuxFlags flags)
    {
        if ((flags & YamuxFlags.Rst) != 0)
            stream.OnReset(new P2PException(P2PErrorCode.StreamReset, $"Yamux stream {stream.Id} reset by the remote"), sendRst: false);
        else if ((flags & YamuxFlags.Fin) != 0)
            stream.OnRemoteFin();
    }

    private YamuxStream? OnRemoteSyn(uint id)
    {
        var remoteParityOdd = !IsClient;
        if ((id % 2 == 1) != remoteParityOdd)
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: remote opened stream {id} with this side's id parity");
        // Ids need not arrive in order (go-yamux sends SYNs outside its id lock), but one open now is a reuse.
        if (_streams.ContainsKey(id))
            throw new P2PException(P2PErrorCode.ProtocolViolation, $"Yamux: remote reused stream id {id}");
        if (_remoteGoAway || _closed || Interlocked.Increment(ref _streamCount) > Options.MaxConcurrentStreams)
        {
            if (!_remoteGoAway && !_closed)
            {
                Interlocked.Decrement(ref _streamCount);
                StreamRefused?.Invoke();
            }
            EnqueueControl(new YamuxHeader(0, YamuxFrameType.WindowUpdate, YamuxFlags.Rst, id, 0));
            return null;
        }
        MarkStreamChange();
        var stream = new YamuxStream(this, id, inbound: true);
        _streams[id] = stream;
        EnqueueControl(new YamuxHeader(0, YamuxFrameType.WindowUpdate, YamuxFlags.Ack, id, 0));
        stream.StartPump();
        _accept.Writer.TryWrite(stream);
        return stream;
    }

    internal void OnStreamAcked() => _unacked.Release();

    internal void OnStreamClosed(YamuxStream stream)
    {
        if (_streams.TryRemove(stream.Id, out _))
        {
            MarkStreamChange();
            Interlocked.Decrement(ref _streamCount);
        }
    }

    private void MarkStreamChange() => Volatile.Write(ref _lastStreamChange, _time.GetTimestamp());

    // ---------------- writing ----------------

    internal void EnqueueControl(YamuxHeader header)
    {
        if (_closed)
            return;
        if (Interlocked.Increment(ref _queuedControl) > Options.MaxQueuedControlFrames)
            throw new P2PException(P2PErrorCode.LimitExceeded, $"Yamux: more than {Options.MaxQueuedControlFrames} control frames queued; the remote does not read");
        _control.Writer.TryWrite(header);
    }

    private async Task ControlLoopAsync()
    {
        var reader = _control.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                await _writeLock.WaitAsync().ConfigureAwait(false);
                try
                {
                    if (_goAwaySent)
                        break;
                    var output = _pipe.Output;
                    WriteQueuedControl(output);
                    var r = await output.FlushAsync().ConfigureAwait(false);
                    if (r.IsCompleted || r.IsCanceled)
                        break;
                }
                finally
                {
                    _writeLock.Release();
                }
            }
        }
        catch (Exception e) when (e is InvalidOperationException or P2PException or IOException or ObjectDisposedException)
        {
            // The output ended; the read loop reports why.
        }
    }

    /// <summary>Writes every queued control frame into <paramref name="output"/> without flushing; the caller holds the write lock.</summary>
    private void WriteQueuedControl(PipeWriter output)
    {
        while (_control.Reader.TryRead(out var h))
        {
            Interlocked.Decrement(ref _queuedControl);
            h.Write(output.GetSpan(YamuxHeader.Size));
            output.Advance(YamuxHeader.Size);
        }
    }

    /// <summary>Writes one frame under the write lock and flushes. Cancelling abandons the wait, not a half-written frame.</summary>
    internal async ValueTask WriteFrameAsync(YamuxHeader header, ReadOnlySequence<byte> payload, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await WriteLockedAsync(header, payload).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async ValueTask WriteLockedAsync(YamuxHeader header, ReadOnlySequence<byte> payload)
    {
        try
        {
            if (_closed || _goAwaySent)
                throw new P2PException(P2PErrorCode.ConnectionClosed, "Yamux session closed", _error);
            var output = _pipe.Output;
            header.Write(output.GetSpan(YamuxHeader.Size));
            output.Advance(YamuxHeader.Size);
            foreach (var seg in payload)
                output.Write(seg.Span);
            var r = await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            if (r.IsCompleted || r.IsCanceled)
                throw new P2PException(P2PErrorCode.ConnectionClosed, "Yamux: connection closed");
        }
        catch (InvalidOperationException e)
        {
            throw new P2PException(P2PErrorCode.ConnectionClosed, "Yamux: connection closed", e);
        }
    }

    private async ValueTask TrySendGoAwayAsync(YamuxGoAwayCode code)
    {
        try
        {
            if (!await _writeLock.WaitAsync(TimeSpan.FromSeconds(1)).ConfigureAwait(false))
                return;
            try
            {
                if (_goAwaySent)
                    return;
                _goAwaySent = true;
                var output = _pipe.Output;
                WriteQueuedControl(output); // an ACK to a SYN just read goes out ahead of the GoAway
                new YamuxHeader(0, YamuxFrameType.GoAway, YamuxFlags.None, 0, (uint)code).Write(output.GetSpan(YamuxHeader.Size));
                output.Advance(YamuxHeader.Size);
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
                await output.FlushAsync(cts.Token).ConfigureAwait(false);
            }
            finally
            {
                _writeLock.Release();
            }
        }
        catch (Exception e) when (e is InvalidOperationException or OperationCanceledException or IOException or P2PException)
        {
            // best effort
        }
    }

    // ---------------- shutdown ----------------

    private async Task ShutdownAsync(Exception? error)
    {
        lock (_completion)
        {
            if (_closed)
                return;
            _error = error;
            _closed = true;
        }
        _accept.Writer.TryComplete();
        _control.Writer.TryComplete();
        var reason = error as P2PException ?? new P2PException(P2PErrorCode.ConnectionClosed, "Yamux session closed", error);
        foreach (var s in _streams.Values)
            s.OnReset(reason, sendRst: false);
        foreach (var p in _pings.Values)
            p.Tcs.TrySetException(reason);
        // Wait for stream pumps to stop using the output before completing it.
        _pipe.Output.CancelPendingFlush();
        await _writeLock.WaitAsync().ConfigureAwait(false);
        try
        {
            await _pipe.Output.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
        // Streams still waiting to be accepted belong to nobody: release them.
        while (_accept.Reader.TryRead(out var s))
            await s.DisposeAsync().ConfigureAwait(false);
        if (error is null) _completion.TrySetResult();
        else _completion.TrySetException(error);
    }

    /// <summary>
    /// Closes the session: sends GoAway(normal), resets open streams, stops both loops and completes the
    /// underlying pipe. Not safe to cancel; bounded to about a second if the remote does not read.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
            return;
        if (!_closed)
            await TrySendGoAwayAsync(YamuxGoAwayCode.Normal).ConfigureAwait(false);
        _pipe.Input.CancelPendingRead();
        _pipe.Output.CancelPendingFlush();
        if (Volatile.Read(ref _started) == 0)
        {
            await _pipe.Input.CompleteAsync().ConfigureAwait(false);
            await ShutdownAsync(null).ConfigureAwait(false);
        }
        await _readLoop.ConfigureAwait(false);
        await _controlLoop.ConfigureAwait(false);
        await ShutdownAsync(null).ConfigureAwait(false);
        foreach (var s in _streams.Values)
            await s.WaitPumpAsync().ConfigureAwait(false);
        _completion.TrySetResult();
    }
}
