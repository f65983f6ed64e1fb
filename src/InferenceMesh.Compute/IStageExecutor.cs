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

    /// <summary>
    /// Runs one step for each of several different sessions as <see cref="Run"/> would, each at its own position and
    /// on its own KV cache, and returns one result per item in order. An item that fails (a bad shape, a position that
    /// does not follow on, a session named twice) gets its <see cref="MeshException"/> and leaves the others running.
    /// A session's outputs are byte-identical to what <see cref="Run"/> would give it alone. This default runs the items
    /// one after the other; an executor that can read its weights once for all of them overrides it.
    /// </summary>
    StageBatchResult[] RunBatch(IReadOnlyList<StageBatchItem> items)
    {
        var results = new StageBatchResult[items.Count];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < items.Count; i++)
        {
            try
            {
                results[i] = seen.Add(items[i].SessionId)
                    ? new StageBatchResult(Run(items[i].SessionId, items[i].Activation, items[i].StartPosition), null)
                    : new StageBatchResult(null, StageBatch.Twice(items[i].SessionId));
            }
            catch (MeshException e)
            {
                results[i] = new StageBatchResult(null, e);
            }
        }
        return results;
    }

    /// <summary>Number of positions cached for the session (0 if unknown).</summary>
    int CachedLength(string sessionId);

    /// <summary>Drops the session's KV cache; unknown ids are ignored.</summary>
    void CloseSession(string sessionId);
}
