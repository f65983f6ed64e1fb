using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>Limits and threading of an <see cref="OrtStageExecutor"/>.</summary>
/// <param name="MaxSessions">Sessions with a live KV cache; one more is refused with <see cref="MeshErrorCode.LimitExceeded"/>.</param>
/// <param name="MaxSequence">Longest cached length in positions per session.</param>
/// <param name="IntraOpThreads">ONNX Runtime threads per run; 0 lets ONNX Runtime choose (one per core). Ignored with <paramref name="SharedThreadPool"/>.</param>
/// <param name="AllowSpinning">Let ONNX Runtime's threads spin between runs: fastest alone, but several processes on few
/// cores (a node, its neighbours, the client) then steal each other's time, so mesh processes turn it off.
/// Ignored with <paramref name="SharedThreadPool"/>, whose spinning is set once per process (<see cref="OrtThreadPool"/>).</param>
/// <param name="SharedThreadPool">Run on the process's one ONNX Runtime thread pool (<see cref="OrtThreadPool"/>) instead of a
/// pool per session: several stages in one process then wake and spin one set of threads, not one set each.</param>
public sealed record OrtExecutorOptions(int MaxSessions = 64, int MaxSequence = 4096, int IntraOpThreads = 0, bool AllowSpinning = true, bool SharedThreadPool = false);
