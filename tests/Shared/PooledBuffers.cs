using InferenceMesh.Core;

namespace InferenceMesh.Tests.Shared;

/// <summary>The process-wide count of pooled tensor buffers rented and not yet returned; tests reading it run alone (a collection with parallelization off).</summary>
public static class PooledBuffers
{
    public static long Outstanding => TensorData.PoolRents - TensorData.PoolReturns;
}
