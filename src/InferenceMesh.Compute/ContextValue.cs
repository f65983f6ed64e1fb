namespace InferenceMesh.Compute;

/// <summary>One computed context input: its shape and the value of each element in row-major order.</summary>
/// <param name="Shape">The tensor's shape (empty for a scalar).</param>
/// <param name="ValueAt">The value of the element at a flat index.</param>
public readonly record struct ContextValue(long[] Shape, Func<int, long> ValueAt);
