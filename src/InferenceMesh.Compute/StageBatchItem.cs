using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// One session's step in a batched executor call (<see cref="IStageExecutor.RunBatch"/>): the same three arguments
/// <see cref="IStageExecutor.Run"/> takes. The executor keeps no reference to <paramref name="Activation"/> after returning.
/// </summary>
/// <param name="SessionId">The session whose KV cache the step reads and extends.</param>
/// <param name="Activation">Token ids <c>[1, t]</c> for the head, otherwise <c>[1, t, dim]</c>.</param>
/// <param name="StartPosition">The first position of the step: the session's cached length.</param>
public readonly record struct StageBatchItem(string SessionId, TensorData Activation, int StartPosition);
