using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// Runs one stage (head, block range or tail) for many sessions, keeping each session's KV cache.
/// Calls for different sessions may run concurrently; calls for one session must not overlap.
/// </summary>
public interface IStageExecutor : IDisposable
{
    StageDescriptor Stage { get; }

    /// <summary>
    /// Runs one step of <paramref name="activation"/> (token ids <c>[1, t]</c> Int64 for the head, otherwise
    /// <c>[1, t, dim]</c> Float32) at positions <c>startPosition .. startPosition + t - 1</c>. For a block stage
    /// <paramref name="startPosition"/> must equal the session's cached length; the cache then grows by t.
    /// Returns the stage's activation output (logits <c>[1, t, vocab]</c> for the tail), which the caller owns (it may be
    /// pooled: dispose it when done). The executor keeps no reference to <paramref name="activation"/> after returning.
    /// </summary>
    TensorData Run(string sessionId, TensorData activation, int startPosition);

    /// <summary>Number of positions cached for the session (0 if unknown).</summary>
    int CachedLength(string sessionId);

    /// <summary>Drops the session's KV cache; unknown ids are ignored.</summary>
    void CloseSession(string sessionId);
}
