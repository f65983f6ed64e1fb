namespace InferenceMesh.Compute.Ilgpu;

/// <summary>What a probe of the machine found: the CUDA devices, or why there are none.</summary>
/// <param name="CudaDevices">Names of the CUDA devices ILGPU can use (empty where none).</param>
/// <param name="CudaUnavailableReason">Why no CUDA device can be used; null when one can.</param>
public sealed record IlgpuProbe(IReadOnlyList<string> CudaDevices, string? CudaUnavailableReason)
{
    public bool HasCuda => CudaDevices.Count > 0;

    /// <summary>Whether <paramref name="backend"/> can run here; <paramref name="reason"/> says why not.</summary>
    public bool IsAvailable(IlgpuBackend backend, out string? reason)
    {
        reason = backend == IlgpuBackend.Cuda ? CudaUnavailableReason : null;
        return reason is null;
    }
}
