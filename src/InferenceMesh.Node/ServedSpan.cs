using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>The consecutive block stages a node serves, each with its executor; a session may use any run of whole stages.</summary>
public sealed class ServedSpan : IDisposable
{
    private readonly IReadOnlyList<IStageExecutor> _stages;
    private readonly IDisposable? _owned;

    /// <param name="owned">Disposed with the span after its stages (the executors' shared device).</param>
    public ServedSpan(Manifest manifest, IReadOnlyList<IStageExecutor> stages, IDisposable? owned = null)
    {
        _owned = owned;
        if (stages.Count == 0)
            throw new MeshException(MeshErrorCode.InvalidArgument, "a node must serve at least one block stage");
        for (var i = 0; i < stages.Count; i++)
        {
            if (stages[i].Stage.Kind != StageKind.Blocks || stages[i].Stage.Blocks is null)
                throw new MeshException(MeshErrorCode.InvalidArgument, $"stage {stages[i].Stage.File} is not a block stage");
            if (i > 0 && stages[i].Stage.Blocks!.Value.Start != stages[i - 1].Stage.Blocks!.Value.End)
                throw new MeshException(MeshErrorCode.InvalidArgument, "served stages must be consecutive");
        }
        Manifest = manifest;
        _stages = stages;
        Blocks = new BlockRange(stages[0].Stage.Blocks!.Value.Start, stages[^1].Stage.Blocks!.Value.End);
    }

    public Manifest Manifest { get; }
    public BlockRange Blocks { get; }
    public IReadOnlyList<IStageExecutor> Stages => _stages;

    /// <summary>The stages covering exactly <paramref name="range"/>, or null when it does not fall on stage boundaries of this span.</summary>
    public IReadOnlyList<IStageExecutor>? StagesFor(BlockRange range)
    {
        var first = -1;
        for (var i = 0; i < _stages.Count; i++)
            if (_stages[i].Stage.Blocks!.Value.Start == range.Start) first = i;
        if (first < 0) return null;
        var selected = new List<IStageExecutor>();
        for (var i = first; i < _stages.Count; i++)
        {
            selected.Add(_stages[i]);
            var end = _stages[i].Stage.Blocks!.Value.End;
            if (end == range.End) return selected;
            if (end > range.End) return null;
        }
        return null;
    }

    /// <summary>Bytes of KV cache one position costs over <paramref name="range"/> (keys and values, fp32).</summary>
    public long KvBytesPerPosition(BlockRange range)
    {
        var config = Manifest.Config ?? throw new MeshException(MeshErrorCode.InvalidManifest, "the manifest has no model config");
        return (long)range.Count * 2 * config.KvDim * sizeof(float);
    }

    /// <summary>
    /// Bytes of KV cache a session of at most <paramref name="maxLength"/> positions may hold over <paramref name="range"/>:
    /// its length rounded up to the stages' past padding (<see cref="OrtStageExecutor.PastPadding"/>), since a padded
    /// cache grows in blocks of that many positions.
    /// </summary>
    public long KvBytesForSession(BlockRange range, int maxLength)
    {
        var padding = Math.Max(1, _stages.OfType<OrtStageExecutor>().Select(s => s.PastPadding).DefaultIfEmpty(0).Max());
        return KvBytesPerPosition(range) * ((maxLength + (long)padding - 1) / padding * padding);
    }

    /// <summary>
    /// Bytes a session of at most <paramref name="maxLength"/> positions keeps of its outputs when it is opened with
    /// <c>OpenSession.KeepOutputs</c>: one float32 row of the residual stream per position (a float16 export keeps half).
    /// </summary>
    public long OutputBytesForSession(int maxLength)
    {
        var config = Manifest.Config ?? throw new MeshException(MeshErrorCode.InvalidManifest, "the manifest has no model config");
        return (long)maxLength * config.Dim * sizeof(float);
    }

    /// <summary>Loads the block stages of <paramref name="blocks"/> from a split directory; the range must fall on stage boundaries.</summary>
    /// <param name="threads">ONNX Runtime threads per stage run (0: one per core).</param>
    public static ServedSpan Load(string directory, BlockRange blocks, ExecutorKind executor = ExecutorKind.Ort, int maxSessions = 64, Action<string>? log = null, int threads = 1)
    {
        var manifest = Manifest.Load(directory);
        var chosen = manifest.BlockStages.Where(s => s.Blocks!.Value.Start >= blocks.Start && s.Blocks!.Value.End <= blocks.End).ToList();
        if (chosen.Count == 0 || chosen[0].Blocks!.Value.Start != blocks.Start || chosen[^1].Blocks!.Value.End != blocks.End)
            throw new MeshException(MeshErrorCode.InvalidArgument,
                $"blocks {blocks} do not fall on the stage boundaries of {directory} ({string.Join(' ', manifest.BlockStages.Select(s => s.Blocks))}); split it with --stages {manifest.BlockCount}");
        // A node shares the machine with its neighbours and clients: ONNX Runtime must not spin between steps.
        var factory = new StageExecutorFactory(executor, log, new OrtExecutorOptions(IntraOpThreads: threads, AllowSpinning: false));
        var executors = new List<IStageExecutor>();
        try
        {
            foreach (var stage in chosen)
                executors.Add(factory.Create(stage, File.ReadAllBytes(Path.Combine(directory, stage.File)), manifest.Config?.MaxSequence ?? 4096, maxSessions, directory));
            return new ServedSpan(manifest, executors, factory);
        }
        catch
        {
            foreach (var created in executors) created.Dispose();
            factory.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var stage in _stages) stage.Dispose();
        _owned?.Dispose();
    }
}
