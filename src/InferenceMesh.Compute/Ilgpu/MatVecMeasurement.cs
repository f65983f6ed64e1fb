namespace InferenceMesh.Compute.Ilgpu;

/// <summary>One matrix-vector measurement: <c>y[out] = x[in] · W[in, out]</c>, fp32.</summary>
/// <param name="Device">What ran it, e.g. "Cuda (NVIDIA H100 80GB HBM3)", "Cpu (CPUAccelerator)" or "TensorPrimitives".</param>
/// <param name="GigabytesPerSecond">Bytes of W, x and y moved per call over the time per call (decimal GB).</param>
/// <param name="PeakGigabytesPerSecond">The device's theoretical memory bandwidth where known (CUDA: 2 × memory clock × bus width), else null.</param>
public sealed record MatVecMeasurement(string Device, int InDim, int OutDim, int Iterations, double SecondsPerCall,
    double GigabytesPerSecond, double GflopsPerSecond, double? PeakGigabytesPerSecond)
{
    public override string ToString() =>
        $"{Device}: matvec {InDim}×{OutDim}: {SecondsPerCall * 1e6:F1} µs/call, {GigabytesPerSecond:F2} GB/s" +
        (PeakGigabytesPerSecond is { } peak ? $" of {peak:F0} GB/s peak ({100 * GigabytesPerSecond / peak:F0}%)" : "") +
        $", {GflopsPerSecond:F2} GFLOP/s";
}
