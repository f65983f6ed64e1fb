namespace InferenceMesh.Onnx.Import.HuggingFace;

/// <summary>One tensor listed in a safetensors header.</summary>
/// <param name="DType">The header's dtype name (<c>F32</c>, <c>F16</c>, <c>BF16</c>, …).</param>
/// <param name="Begin">Offset of its first byte from the start of the data section.</param>
/// <param name="End">Offset one past its last byte.</param>
public sealed record SafetensorsTensor(string Name, string DType, long[] Shape, long Begin, long End)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
}
