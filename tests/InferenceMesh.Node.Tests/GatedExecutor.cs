using System.Collections.Concurrent;
using System.Threading.Channels;
using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Node.Tests;

/// <summary>
/// Wraps a real executor to watch a server's use of it: the next Run after <see cref="GateNext"/> says on
/// <see cref="Entered"/> that it has started and then waits for <see cref="Release"/>. It records every Run, and
/// as a violation any Run of a session after its CloseSession and any CloseSession while a Run of it is in progress.
/// Disposing it leaves the wrapped executor to its owner.
/// </summary>
internal sealed class GatedExecutor(IStageExecutor inner) : IStageExecutor
{
    private static readonly TimeSpan LongestGate = TimeSpan.FromSeconds(30);
    private readonly ConcurrentDictionary<string, int> _running = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _closed = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _violations = new();
    private readonly ConcurrentQueue<(string Session, int StartPosition)> _runs = new();
    private readonly Channel<string> _entered = Channel.CreateUnbounded<string>();
    private readonly SemaphoreSlim _release = new(0);
    private int _armed;

    /// <summary>Makes the next Run, whichever session it is for, wait for <see cref="Release"/>.</summary>
    public void GateNext() => Volatile.Write(ref _armed, 1);

    /// <summary>The session of each gated Run, as it starts.</summary>
    public ChannelReader<string> Entered => _entered.Reader;

    public IReadOnlyCollection<string> Violations => _violations;

    public StageDescriptor Stage => inner.Stage;

    public void Release() => _release.Release();

    /// <summary>Every run, in the order they started (the items of one batch in batch order).</summary>
    public IReadOnlyList<(string Session, int StartPosition)> Runs => _runs.ToList();

    public IReadOnlyList<int> RunsOf(string sessionId) => _runs.Where(r => r.Session == sessionId).Select(r => r.StartPosition).ToList();

    public bool WasClosed(string sessionId) => _closed.ContainsKey(sessionId);

    public TensorData Run(string sessionId, TensorData activation, int startPosition)
    {
        if (_closed.ContainsKey(sessionId)) _violations.Enqueue($"Run of {sessionId} at {startPosition} after its CloseSession");
        _running.AddOrUpdate(sessionId, 1, (_, n) => n + 1);
        try
        {
            _runs.Enqueue((sessionId, startPosition));
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                _entered.Writer.TryWrite(sessionId);
                if (!_release.Wait(LongestGate)) _violations.Enqueue($"Run of {sessionId} was never released");
            }
            return inner.Run(sessionId, activation, startPosition);
        }
        finally
        {
            _running.AddOrUpdate(sessionId, 0, (_, n) => n - 1);
        }
    }

    /// <summary>Records and gates a batch as one call and hands it to the wrapped executor's own batched path.</summary>
    public StageBatchResult[] RunBatch(IReadOnlyList<StageBatchItem> items)
    {
        foreach (var item in items)
        {
            if (_closed.ContainsKey(item.SessionId)) _violations.Enqueue($"Run of {item.SessionId} at {item.StartPosition} after its CloseSession");
            _running.AddOrUpdate(item.SessionId, 1, (_, n) => n + 1);
        }
        try
        {
            foreach (var item in items) _runs.Enqueue((item.SessionId, item.StartPosition));
            if (Interlocked.Exchange(ref _armed, 0) == 1)
            {
                _entered.Writer.TryWrite(items[0].SessionId);
                if (!_release.Wait(LongestGate)) _violations.Enqueue($"Run of {items[0].SessionId} was never released");
            }
            return inner.RunBatch(items);
        }
        finally
        {
            foreach (var item in items) _running.AddOrUpdate(item.SessionId, 0, (_, n) => n - 1);
        }
    }

    public int CachedLength(string sessionId) => inner.CachedLength(sessionId);

    public void CloseSession(string sessionId)
    {
        if (_running.TryGetValue(sessionId, out var running) && running > 0)
            _violations.Enqueue($"CloseSession({sessionId}) while {running} Run of it was in progress");
        _closed[sessionId] = true;
        inner.CloseSession(sessionId);
    }

    public void Dispose() => _release.Dispose();
}
