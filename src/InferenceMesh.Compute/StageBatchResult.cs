using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// What one item of a batched call gave: the step's output (owned by the caller, as <see cref="IStageExecutor.Run"/>'s is)
/// or the typed error that item alone failed with, the other items being unaffected.
/// </summary>
public readonly record struct StageBatchResult(TensorData? Output, MeshException? Error)
{
    public bool Succeeded => Output is not null;
}
