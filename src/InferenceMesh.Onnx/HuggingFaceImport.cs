namespace InferenceMesh.Onnx;

/// <summary>What <see cref="ModelStore.ImportHuggingFace"/> wrote.</summary>
/// <param name="LargestTensorBytes">The largest weight as float32, in bytes: the most one conversion step holds in memory.</param>
/// <param name="WeightBytes">Size of the written external-data file, in bytes.</param>
public sealed record HuggingFaceImport(ModelDescription Description, string Architecture, long LargestTensorBytes, long WeightBytes);
