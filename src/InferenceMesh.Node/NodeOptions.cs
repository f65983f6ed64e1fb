namespace InferenceMesh.Node;

/// <summary>Limits of one serving node.</summary>
/// <param name="MaxSessions">Open sessions at once; one more is refused with LimitExceeded.</param>
/// <param name="KvBudgetBytes">Bytes of KV cache the node may reserve over all sessions (a session reserves its maximum length up front).</param>
/// <param name="IdleTimeout">A session with no step for this long is closed and its cache freed.</param>
/// <param name="MaxQueuedStepsPerSession">Steps waiting per session; more is refused with Overloaded.</param>
/// <param name="MaxConcurrentSteps">Steps computed at once over all sessions (the compute runtime uses every core for each) with batching off; with batching on, one batch runs at a time.</param>
/// <param name="MaxBatchSize">Steps of different sessions that may run as one executor call (continuous batching, <see cref="StageServer"/>); 1 turns batching off and runs every step on its own.</param>
/// <param name="PrefillChunk">With batching on, a step of more positions than this runs in chunks of this many, interleaved with other sessions' steps.</param>
/// <param name="KvSharePerPeer">Fraction (0–1] of <paramref name="KvBudgetBytes"/> and of <paramref name="MaxSessions"/> the sessions of one remote peer may hold together, so that one client cannot fill the node.</param>
public sealed record NodeOptions(
    int MaxSessions = 64,
    long KvBudgetBytes = 1L << 30,
    TimeSpan? IdleTimeout = null,
    int MaxQueuedStepsPerSession = 32,
    int MaxConcurrentSteps = 2,
    double KvSharePerPeer = 0.5,
    int MaxBatchSize = 64,
    int PrefillChunk = 64)
{
    /// <summary>Bytes of KV cache one peer's sessions may reserve: <see cref="KvSharePerPeer"/> of the budget.</summary>
    public long KvBytesPerPeer => (long)(KvBudgetBytes * Math.Clamp(KvSharePerPeer, 0, 1));

    /// <summary>Sessions one peer may hold: <see cref="KvSharePerPeer"/> of <see cref="MaxSessions"/>, at least one.</summary>
    public int SessionsPerPeer => Math.Max(1, (int)(MaxSessions * Math.Clamp(KvSharePerPeer, 0, 1)));

    public TimeSpan SessionIdleTimeout => IdleTimeout ?? TimeSpan.FromMinutes(5);
}
