using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.Core;

namespace InferenceMesh.Protocol;

/// <summary>
/// Stage messages over any <see cref="IDuplexPipe"/> (a Yamux stream, or an in-memory pipe in tests and
/// benchmarks). Sends are serialized so several steps can be in flight; a slow reader holds senders back
/// through the pipe's flush (backpressure). Receiving is for one reader at a time.
/// </summary>
public sealed class StageChannel : IAsyncDisposable
{
    private readonly IDuplexPipe _pipe;
    private readonly StageLimits _limits;
    private readonly StageTraffic? _traffic;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private bool _disposed;

    /// <param name="traffic">Counts the bytes of the frames this channel sends and receives; null for none.</param>
    public StageChannel(IDuplexPipe pipe, StageLimits? limits = null, StageTraffic? traffic = null)
    {
        _pipe = pipe;
        _limits = limits ?? new StageLimits();
        _traffic = traffic;
    }

    /// <summary>The frame and field limits this channel reads and writes under.</summary>
    public StageLimits Limits => _limits;

    /// <summary>
    /// Whether the transport under this channel runs through a relay (a libp2p <c>/p2p-circuit</c> connection); null when
    /// the dialer does not say (an in-memory pipe). Set by the dialer that opened the stream.
    /// </summary>
    public bool? IsRelayed { get; init; }

    /// <summary>
    /// Writes one message and waits for the transport to take it; after <see cref="DisposeAsync"/> it throws
    /// <see cref="ObjectDisposedException"/>. Safe to cancel only before the write starts.
    /// </summary>
    public async ValueTask SendAsync(StageMessage message, CancellationToken cancellation = default)
    {
        await _sendLock.WaitAsync(cancellation).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var bytes = StageCodec.Write(_pipe.Output, message, _limits);
            var flush = await _pipe.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
            if (flush.IsCompleted)
                throw new MeshException(MeshErrorCode.ProtocolViolation, "the peer closed the stage stream");
            _traffic?.Sent(bytes);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    /// <summary>
    /// Returns the next message, or null when the peer closed the stream cleanly between frames. A malformed,
    /// oversized or truncated frame throws <see cref="MeshException"/>; the channel is then unusable. Safe to cancel.
    /// </summary>
    public async ValueTask<StageMessage?> ReceiveAsync(CancellationToken cancellation = default)
    {
        while (true)
        {
            var result = await _pipe.Input.ReadAsync(cancellation).ConfigureAwait(false);
            var buffer = result.Buffer;
            var available = buffer.Length;
            var consumed = buffer.Start;
            var examined = buffer.End;
            try
            {
                if (StageCodec.TryRead(ref buffer, _limits, out var message))
                {
                    consumed = buffer.Start;
                    examined = consumed;
                    _traffic?.Received(available - buffer.Length);
                    return message;
                }
                if (result.IsCompleted)
                {
                    if (buffer.IsEmpty) return null;
                    throw new MeshException(MeshErrorCode.ProtocolViolation, $"the stage stream ended inside a frame ({buffer.Length} bytes left)");
                }
                if (result.IsCanceled) throw new OperationCanceledException(cancellation);
            }
            finally
            {
                _pipe.Input.AdvanceTo(consumed, examined);
            }
        }
    }

    /// <summary>
    /// Waits for a send in progress to finish, then completes both directions of the pipe. Sends that were waiting
    /// then throw <see cref="ObjectDisposedException"/>, so the send lock is left to the collector (it never allocates
    /// a wait handle) rather than disposed under them. Not cancellable.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await _sendLock.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed) return;
            _disposed = true;
            await _pipe.Output.CompleteAsync().ConfigureAwait(false);
            await _pipe.Input.CompleteAsync().ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }
}
