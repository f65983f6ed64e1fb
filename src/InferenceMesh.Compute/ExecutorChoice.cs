using InferenceMesh.Compute.Ilgpu;

namespace InferenceMesh.Compute;

/// <summary>The outcome of resolving an <see cref="ExecutorKind"/>: a concrete executor and, for ILGPU, its backend, with the reason in words.</summary>
/// <param name="Kind"><see cref="ExecutorKind.Ort"/> or <see cref="ExecutorKind.Ilgpu"/>, never <see cref="ExecutorKind.Auto"/>.</param>
/// <param name="Backend">The ILGPU backend when <paramref name="Kind"/> is ILGPU; null for ONNX Runtime.</param>
/// <param name="Reason">One line for logs and <c>--verbose</c>, e.g. "auto: no GPU (…), so ONNX Runtime".</param>
public sealed record ExecutorChoice(ExecutorKind Kind, IlgpuBackend? Backend, string Reason);
