using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>Parses and resolves <see cref="ExecutorKind"/>.</summary>
public static class ExecutorKinds
{
    /// <summary>Parses <c>auto</c>, <c>ort</c> or <c>ilgpu</c> (any case); throws <see cref="MeshException"/> otherwise.</summary>
    public static ExecutorKind Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "auto" => ExecutorKind.Auto,
        "ort" or "onnxruntime" => ExecutorKind.Ort,
        "ilgpu" => ExecutorKind.Ilgpu,
        _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown executor '{text}'; expected auto, ort or ilgpu"),
    };

    /// <summary>Resolves <paramref name="requested"/> against this machine (probes for CUDA once per process).</summary>
    public static ExecutorChoice Resolve(ExecutorKind requested) => Resolve(requested, IlgpuDevices.Probe());

    /// <summary>
    /// Resolves <paramref name="requested"/> against <paramref name="probe"/>: <c>auto</c> takes ILGPU on a GPU and ONNX Runtime on a
    /// CPU (ILGPU's CPU accelerator is about 100× slower than ONNX Runtime there); <c>ilgpu</c> without a GPU runs on the CPU accelerator.
    /// </summary>
    public static ExecutorChoice Resolve(ExecutorKind requested, IlgpuProbe probe)
    {
        ArgumentNullException.ThrowIfNull(probe);
        var gpu = probe.HasCuda ? $"CUDA device {probe.CudaDevices[0]}" : null;
        return requested switch
        {
            ExecutorKind.Ort => new ExecutorChoice(ExecutorKind.Ort, null, "ort: ONNX Runtime (asked for)"),
            ExecutorKind.Ilgpu when gpu is not null =>
                new ExecutorChoice(ExecutorKind.Ilgpu, IlgpuBackend.Cuda, $"ilgpu: ILGPU on {gpu}"),
            ExecutorKind.Ilgpu =>
                new ExecutorChoice(ExecutorKind.Ilgpu, IlgpuBackend.Cpu,
                    $"ilgpu: ILGPU on its CPU accelerator, because {probe.CudaUnavailableReason}; expect it to be far slower than ONNX Runtime"),
            ExecutorKind.Auto when gpu is not null =>
                new ExecutorChoice(ExecutorKind.Ilgpu, IlgpuBackend.Cuda, $"auto: {gpu} found, so ILGPU on CUDA"),
            ExecutorKind.Auto =>
                new ExecutorChoice(ExecutorKind.Ort, null, $"auto: no GPU ({probe.CudaUnavailableReason}), so ONNX Runtime on the CPU"),
            _ => throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown executor kind {requested}"),
        };
    }
}
