using System.Diagnostics;
using System.IO.Pipelines;
using System.Threading.Channels;

namespace InferenceMesh.Protocol;

/// <summary>
/// Emulates a link's one-way delay in user space (this project's kernels have no netem): every byte written
/// reaches the wrapped pipe <see cref="Delay"/> after it was flushed, in order, without holding the writer
/// back, so pipelined frames overlap as they would on a real link. Reading is untouched; wrap both ends for
/// a symmetric delay. Disposing stops the pump after what was already written has been delivered.
/// </summary>
public sealed class DelayedDuplexPipe : IDuplexPipe, IAsyncDisposable
{
    private readonly IDuplexPipe _inner;
    private readonly Pipe _outgoing = new(new PipeOptions(pauseWriterThreshold: 16 << 20, resumeWriterThreshold: 8 << 20, useSynchronizationContext: false));
    private readonly Channel<(long Due, byte[] Bytes)> _inFlight = Channel.CreateUnbounded<(long, byte[])>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly Task _stamping;
    private readonly Task _delivering;

    public DelayedDuplexPipe(IDuplexPipe inner, TimeSpan delay)
    {
        _inner = inner;
        Delay = delay;
        _stamping = StampAsync();
        _delivering = DeliverAsync();
    }

    public TimeSpan Delay { get; }
    public PipeReader Input => _inner.Input;
    public PipeWriter Output => _outgoing.Writer;

    private async Task StampAsync()
    {
        var delayTicks = (long)(Delay.TotalSeconds * Stopwatch.Frequency);
        try
        {
            while (true)
            {
                var result = await _outgoing.Reader.ReadAsync().ConfigureAwait(false);
                var due = Stopwatch.GetTimestamp() + delayTicks;
                foreach (var segment in result.Buffer)
                    await _inFlight.Writer.WriteAsync((due, segment.ToArray())).ConfigureAwait(false);
                _outgoing.Reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled) break;
            }
            await _outgoing.Reader.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await _outgoing.Reader.CompleteAsync(e).ConfigureAwait(false);
        }
        finally
        {
            _inFlight.Writer.TryComplete();
        }
    }

    private async Task DeliverAsync()
    {
        try
        {
            await foreach (var (due, bytes) in _inFlight.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero) await Task.Delay(wait).ConfigureAwait(false);
                await _inner.Output.WriteAsync(bytes).ConfigureAwait(false);
            }
            await _inner.Output.CompleteAsync().ConfigureAwait(false);
        }
        catch (Exception e)
        {
            await _inner.Output.CompleteAsync(e).ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _outgoing.Writer.CompleteAsync().ConfigureAwait(false);
        await Task.WhenAll(_stamping, _delivering).ConfigureAwait(false);
    }
}
