using InferenceMesh.Core;

namespace InferenceMesh.Compute.Ilgpu;

/// <summary>Limits and device of an <see cref="IlgpuStageExecutor"/>.</summary>
/// <param name="MaxSessions">Sessions with a live KV cache; one more is refused with <see cref="MeshErrorCode.LimitExceeded"/>.</param>
/// <param name="MaxSequence">Longest cached length in positions per session (<see cref="MeshErrorCode.ContextOverflow"/> past it).</param>
/// <param name="Backend">The backend to open when no device is given; null picks CUDA when present, else the CPU accelerator.</param>
/// <param name="GroupedKernels">Force the shared-memory group kernels on (or off); null takes <see cref="LlamaKernels.PreferGrouped"/> (on for a GPU).</param>
/// <param name="MaxChunkRows">Rows of a long prefill run through the blocks at once; bounds the scratch memory (scores are rows × heads × positions).</param>
public sealed record IlgpuExecutorOptions(int MaxSessions = 64, int MaxSequence = 4096, IlgpuBackend? Backend = null, bool? GroupedKernels = null, int MaxChunkRows = 256);
