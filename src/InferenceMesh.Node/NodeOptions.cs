namespace InferenceMesh.Node;

/// <summary>Limits of one serving node.</summary>
/// <param name="MaxSessions">Open sessions at once; one more is refused with LimitExceeded.</param>
/// <param name="KvBudgetBytes">Bytes of KV cache the node may reserve over all sessions (a session reserves its maximum length up front).</param>
/// <param name="IdleTimeout">A session with no step for this long is closed and its cache freed.</param>
/// <param name="MaxQueuedStepsPerSession">Steps waiting per session; more is refused with Overloaded.</param>
/// <param name="MaxConcurrentSteps">Steps computed at once over all sessions (the compute runtime uses every core for each).</param>
public sealed record NodeOptions(
    int MaxSessions = 64,
    long KvBudgetBytes = 1L << 30,
    TimeSpan? IdleTimeout = null,
    int MaxQueuedStepsPerSession = 32,
    int MaxConcurrentSteps = 2)
{
    public TimeSpan SessionIdleTimeout => IdleTimeout ?? TimeSpan.FromMinutes(5);
}
