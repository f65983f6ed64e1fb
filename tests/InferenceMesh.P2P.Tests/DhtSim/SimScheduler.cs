using InferenceMesh.P2P.Dht;

namespace InferenceMesh.P2P.Tests.DhtSim;

/// <summary>
/// Virtual time and a single-threaded event loop: timed events run in (time, sequence) order, and every
/// await continuation is posted (through <see cref="SynchronizationContext"/>) to a ready queue run before
/// time advances. Nothing touches the wall clock or the thread pool, so a run is a pure function of its seed.
/// </summary>
public sealed class SimScheduler : TimeProvider
{
    private readonly PriorityQueue<Action, (long Time, long Seq)> _timed = new();
    private readonly Queue<(SendOrPostCallback Cb, object? State)> _ready = new();
    private readonly Context _context;
    private long _seq;

    public SimScheduler(DateTimeOffset start)
    {
        Start = start;
        _context = new Context(this);
    }

    public DateTimeOffset Start { get; }

    /// <summary>Virtual milliseconds since <see cref="Start"/>.</summary>
    public long NowMs { get; private set; }

    public long EventsRun { get; private set; }

    public override DateTimeOffset GetUtcNow() => Start.AddMilliseconds(NowMs);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        throw new NotSupportedException("the simulator drives maintenance explicitly");

    /// <summary>Runs <paramref name="action"/> at <see cref="NowMs"/> + <paramref name="delayMs"/>.</summary>
    public void At(long delayMs, Action action) => _timed.Enqueue(action, (NowMs + Math.Max(0, delayMs), _seq++));

    /// <summary>Jumps the clock forward with nothing pending (e.g. to let records age).</summary>
    public void Advance(TimeSpan by)
    {
        if (_timed.Count > 0 || _ready.Count > 0)
            throw new InvalidOperationException("advance only when idle");
        NowMs += (long)by.TotalMilliseconds;
    }

    /// <summary>Starts <paramref name="start"/> inside the simulation and runs events until its task ends; returns its result.</summary>
    public T Run<T>(Func<Task<T>> start)
    {
        var task = RunTask(start);
        return task.GetAwaiter().GetResult();
    }

    /// <summary>Starts <paramref name="start"/> inside the simulation and runs events until its task ends.</summary>
    public void Run(Func<Task> start) => RunTask(async () => { await start(); return 0; }).GetAwaiter().GetResult();

    private Task<T> RunTask<T>(Func<Task<T>> start)
    {
        var previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(_context);
        try
        {
            var task = start();
            while (!task.IsCompleted)
            {
                if (_ready.TryDequeue(out var r))
                {
                    r.Cb(r.State);
                    EventsRun++;
                }
                else if (_timed.TryDequeue(out var action, out var when))
                {
                    NowMs = when.Time;
                    action();
                    EventsRun++;
                }
                else
                {
                    throw new InvalidOperationException("simulation deadlock: task pending with no events left");
                }
            }
            // Drain what the finished task left ready (continuations of abandoned requests) so runs stay isolated.
            while (_ready.TryDequeue(out var r)) r.Cb(r.State);
            return task;
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    /// <summary>Runs every pending event (abandoned requests' timeouts) so the next phase starts idle.</summary>
    public void Drain()
    {
        var previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(_context);
        try
        {
            while (true)
            {
                if (_ready.TryDequeue(out var r)) r.Cb(r.State);
                else if (_timed.TryDequeue(out var action, out var when)) { NowMs = when.Time; action(); }
                else break;
            }
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
    }

    private sealed class Context(SimScheduler owner) : SynchronizationContext
    {
        public override void Post(SendOrPostCallback d, object? state) => owner._ready.Enqueue((d, state));
        public override void Send(SendOrPostCallback d, object? state) => d(state);
        public override SynchronizationContext CreateCopy() => this;
    }
}
