using InferenceMesh.Compute.Ilgpu;
using InferenceMesh.Core;

namespace InferenceMesh.Compute;

/// <summary>
/// Creates stage executors for one resolved <see cref="ExecutorChoice"/>: block stages on ILGPU when chosen
/// (falling back to ONNX Runtime, with a log line, for a graph the kernels do not recognise); the head,
/// the tail and whole-model graphs always on ONNX Runtime. Owns the shared ILGPU device.
/// </summary>
public sealed class StageExecutorFactory : IDisposable
{
    private readonly Action<string> _log;
    private readonly OrtExecutorOptions _ortOptions;
    private IlgpuDevice? _device;

    /// <param name="ortOptions">Threading of the ONNX Runtime executors; their limits come from each <see cref="Create"/> call.</param>
    public StageExecutorFactory(ExecutorKind requested, Action<string>? log = null, OrtExecutorOptions? ortOptions = null)
    {
        Choice = ExecutorKinds.Resolve(requested);
        _log = log ?? (_ => { });
        _ortOptions = ortOptions ?? new OrtExecutorOptions();
    }

    public ExecutorChoice Choice { get; }

    /// <summary>Runs block stages on ILGPU; in-process generation then splits an unsplit model into one block stage.</summary>
    public bool UsesIlgpu => Choice.Kind == ExecutorKind.Ilgpu;

    /// <param name="maxSessions">Sessions each executor keeps a KV cache for.</param>
    /// <param name="maxSequence">Positions per session.</param>
    /// <param name="externalDataDirectory">Where external-data locations in <paramref name="model"/> resolve (the stage file's directory); null for inline weights.</param>
    public IStageExecutor Create(StageDescriptor stage, byte[] model, int maxSequence, int maxSessions = 64, string? externalDataDirectory = null)
    {
        if (UsesIlgpu && stage.Kind == StageKind.Blocks)
        {
            try
            {
                _device ??= IlgpuDevices.Open(Choice.Backend);
                return new IlgpuStageExecutor(stage, model, new IlgpuExecutorOptions(MaxSessions: maxSessions, MaxSequence: maxSequence), _device, externalDataDirectory);
            }
            catch (MeshException e) when (e.Code == MeshErrorCode.InvalidOnnx)
            {
                _log($"stage {stage.File} runs on ONNX Runtime: {e.Message}");
            }
        }
        return new OrtStageExecutor(stage, model, _ortOptions with { MaxSessions = maxSessions, MaxSequence = maxSequence }, externalDataDirectory);
    }

    public void Dispose()
    {
        _device?.Dispose();
        _device = null;
    }
}
