namespace InferenceMesh.Compute;

/// <summary>Which stage executor runs the blocks: the <c>--executor</c> option of <c>generate</c> and <c>node</c>.</summary>
public enum ExecutorKind
{
    /// <summary>ILGPU when a GPU is present, ONNX Runtime otherwise.</summary>
    Auto,

    /// <summary>ONNX Runtime on the CPU.</summary>
    Ort,

    /// <summary>The ILGPU kernels: on CUDA when present, else on ILGPU's CPU accelerator (slow; for correctness).</summary>
    Ilgpu,
}
