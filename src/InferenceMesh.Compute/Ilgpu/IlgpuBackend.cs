namespace InferenceMesh.Compute.Ilgpu;

/// <summary>The ILGPU backends this project runs kernels on.</summary>
public enum IlgpuBackend
{
    /// <summary>ILGPU's CPU accelerator: always present; for correctness, not speed (about 1 GFLOP/s).</summary>
    Cpu,

    /// <summary>An NVIDIA GPU through ILGPU's CUDA/PTX backend.</summary>
    Cuda,
}
