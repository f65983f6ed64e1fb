namespace InferenceMesh.Core;

/// <summary>A named graph input or output. Dimensions are numbers, or symbolic names such as <c>batch</c>.</summary>
public sealed record TensorInfo(string Name, DType Type, IReadOnlyList<string> Shape);
