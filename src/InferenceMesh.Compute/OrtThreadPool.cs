using InferenceMesh.Core;
using Microsoft.ML.OnnxRuntime;

namespace InferenceMesh.Compute;

/// <summary>
/// The process's shared ONNX Runtime intra-op thread pool. ONNX Runtime creates its environment once per
/// process; when this class creates it, the environment owns one pool that every executor built with
/// <see cref="OrtExecutorOptions.SharedThreadPool"/> runs on. Executors without that option keep their own pools.
/// Thread-safe.
/// </summary>
public static class OrtThreadPool
{
    private static readonly Lock Gate = new();
    private static bool? _available;
    private static int _threads;
    private static bool _spinning;

    /// <summary>Whether the shared pool exists: false when ONNX Runtime's environment was created elsewhere first.</summary>
    public static bool IsAvailable => EnsureCreated();

    /// <summary>Threads of the shared pool (0 when it is not available).</summary>
    public static int Threads => EnsureCreated() ? _threads : 0;

    /// <summary>Whether the shared pool's threads spin between operators.</summary>
    public static bool Spinning => EnsureCreated() && _spinning;

    /// <summary>
    /// Sets the shared pool's size and spinning before anything in the process has used ONNX Runtime
    /// (spinning suits one process that has the cores to itself; mesh processes that share cores turn it off).
    /// </summary>
    /// <param name="threads">Threads including the caller's; 0 means one per core.</param>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> when the environment already exists with other settings.</exception>
    public static void Configure(int threads, bool spinning)
    {
        lock (Gate)
        {
            if (_available is not null)
            {
                if (_available == true && _threads == Resolve(threads) && _spinning == spinning) return;
                throw new MeshException(MeshErrorCode.InvalidArgument,
                    $"ONNX Runtime's environment already exists ({(_available == true ? $"shared pool of {_threads} threads, spinning {_spinning}" : "without a shared pool")}); configure the shared pool before the first executor");
            }
            Create(threads, spinning);
        }
    }

    /// <summary>Creates the environment with the shared pool unless it exists; returns whether the pool is available.</summary>
    internal static bool EnsureCreated()
    {
        lock (Gate)
        {
            if (_available is null) Create(0, spinning: true);
            return _available!.Value;
        }
    }

    private static int Resolve(int threads) => threads > 0 ? threads : Environment.ProcessorCount;

    private static void Create(int threads, bool spinning)
    {
        if (OrtEnv.IsCreated)
        {
            _available = false;
            return;
        }
        using var threading = new OrtThreadingOptions { GlobalIntraOpNumThreads = Resolve(threads), GlobalInterOpNumThreads = 1, GlobalSpinControl = spinning };
        var options = new EnvironmentCreationOptions { threadOptions = threading };
        OrtEnv.CreateInstanceWithOptions(ref options);
        _available = true;
        _threads = Resolve(threads);
        _spinning = spinning;
    }
}
