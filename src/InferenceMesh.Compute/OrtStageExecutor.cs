using System.Collections.Concurrent;
using InferenceMesh.Core;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace InferenceMesh.Compute;

/// <summary>
/// Runs one stage graph on ONNX Runtime (CPU) and keeps each session's KV cache as the ONNX Runtime
/// values the stage returned, fed back on the next step without a copy. The activation is read in place (pinned);
/// the output is one copy into a pooled tensor that the caller owns.
/// </summary>
public sealed class OrtStageExecutor : IStageExecutor
{
    private readonly InferenceSession _session;
    private readonly OrtExecutorOptions _options;
    private readonly ConcurrentDictionary<string, SessionCache> _caches = new(StringComparer.Ordinal);
    private readonly string[] _inputNames;
    private readonly string[] _outputNames;
    private readonly long[][] _pastShapes;
    private readonly TensorElementType[] _pastTypes;
    private readonly TensorInfo[] _contextInfos;
    private readonly long? _staticCacheLength;
    private readonly TensorElementType[] _contextTypes;
    private readonly DType _activationType;

    /// <param name="model">The stage's ONNX bytes.</param>
    /// <param name="externalDataDirectory">The directory that external-data locations in <paramref name="model"/> are relative to (the stage file's); null when its weights are inline.</param>
    public OrtStageExecutor(StageDescriptor stage, byte[] model, OrtExecutorOptions? options = null, string? externalDataDirectory = null)
    {
        Stage = stage;
        _options = options ?? new OrtExecutorOptions();
        // The environment is created first so that, when this process has not used ONNX Runtime before, it holds the shared pool.
        UsesSharedThreadPool = OrtThreadPool.EnsureCreated() && _options.SharedThreadPool;
        using var sessionOptions = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, IntraOpNumThreads = _options.IntraOpThreads };
        if (UsesSharedThreadPool) sessionOptions.DisablePerSessionThreads();
        else if (!_options.AllowSpinning) sessionOptions.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
        if (externalDataDirectory is not null)
            sessionOptions.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetFullPath(externalDataDirectory));
        try
        {
            _session = new InferenceSession(model, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new MeshException(MeshErrorCode.InvalidOnnx, $"ONNX Runtime cannot load stage {stage.File}: {e.Message}", e);
        }
        foreach (var context in stage.ContextInputs)
            if (!ContextInputs.IsKnown(context))
                throw new MeshException(MeshErrorCode.InvalidOnnx,
                    $"stage {stage.File} needs context input '{context}', which this executor cannot provide (it computes {string.Join(", ", ContextInputs.Known)})");
        _inputNames = [stage.ActivationInput, .. stage.ContextInputs, .. stage.State.Select(s => s.Past)];
        _outputNames = [stage.ActivationOutput, .. stage.State.Select(s => s.Present)];
        _pastShapes = stage.State.Select(s => EmptyPastShape(stage.Inputs.Single(i => i.Name == s.Past))).ToArray();
        _staticCacheLength = stage.State.Select(s => StaticCacheLength(stage.Inputs.Single(i => i.Name == s.Past))).DefaultIfEmpty(null).Min();
        _pastTypes = stage.State.Select(s => ElementType(stage.Inputs.Single(i => i.Name == s.Past).Type)).ToArray();
        _contextInfos = stage.ContextInputs.Select(c => stage.Inputs.Single(i => i.Name == c)).ToArray();
        _contextTypes = _contextInfos.Select(c => ElementType(c.Type)).ToArray();
        foreach (var context in _contextInfos)
            ContextInputs.For(context.Name, context.Shape, 0, 1);
        _activationType = stage.Inputs.Single(i => i.Name == stage.ActivationInput).Type;
        ActivationWidth = stage.Inputs.Single(i => i.Name == stage.ActivationInput).Shape.Select(d => long.TryParse(d, out var v) ? v : 0).LastOrDefault();
    }

    public StageDescriptor Stage { get; }

    /// <summary>Whether this executor runs on <see cref="OrtThreadPool"/> (asked for, and the process's environment has the pool).</summary>
    public bool UsesSharedThreadPool { get; }

    /// <summary>Last dimension of the activation input (the model width), or 0 for the head's token ids.</summary>
    public long ActivationWidth { get; }

    public int CachedLength(string sessionId) => _caches.TryGetValue(sessionId, out var cache) ? cache.Length : 0;

    public TensorData Run(string sessionId, TensorData activation, int startPosition)
    {
        ValidateActivation(activation);
        var steps = (int)activation.Shape[1];
        var cache = Stage.State.Count == 0 ? null : _caches.GetOrAdd(sessionId, _ => _caches.Count >= _options.MaxSessions
            ? throw new MeshException(MeshErrorCode.LimitExceeded, $"stage {Stage.File} already holds {_options.MaxSessions} sessions")
            : new SessionCache());
        if (cache is not null && cache.Length != startPosition)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"session {sessionId} has {cache.Length} cached positions; a step at position {startPosition} does not follow on");
        if (startPosition + steps > _options.MaxSequence)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"session {sessionId} would reach {startPosition + steps} positions; the limit is {_options.MaxSequence}");
        if (startPosition + steps > _staticCacheLength)
            throw new MeshException(MeshErrorCode.ContextOverflow, $"session {sessionId} would reach {startPosition + steps} positions; stage {Stage.File}'s static cache holds {_staticCacheLength}");

        // Cached pasts belong to the session cache; everything else built here is disposed after the run.
        var inputs = new OrtValue[_inputNames.Length];
        var owned = new bool[_inputNames.Length];
        // ONNX Runtime reads the activation where it lies, pinned for the run, instead of from a native copy.
        using var pinned = activation.Bytes.Pin();
        try
        {
            inputs[0] = PinnedOrtValue(activation, pinned);
            owned[0] = true;
            var index = 1;
            for (var c = 0; c < _contextInfos.Length; c++)
            {
                owned[index] = true;
                var value = ContextInputs.For(_contextInfos[c].Name, _contextInfos[c].Shape, startPosition, steps);
                inputs[index++] = IntTensor(_contextTypes[c], value.Shape, value.ValueAt);
            }
            for (var s = 0; s < Stage.State.Count; s++)
            {
                owned[index] = cache!.Past is null;
                inputs[index++] = cache.Past?[s] ?? EmptyPast(_pastTypes[s], _pastShapes[s]);
            }

            using var runOptions = new RunOptions();
            var outputs = _session.Run(runOptions, _inputNames, inputs, _outputNames);
            using (var logits = outputs[0])
            {
                var presents = new OrtValue[Stage.State.Count];
                for (var s = 0; s < presents.Length; s++) presents[s] = outputs[s + 1];
                cache?.Replace(presents, startPosition + steps);
                return FromOrtValue(logits);
            }
        }
        catch (OnnxRuntimeException e)
        {
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"stage {Stage.File} failed on {activation}: {e.Message}", e);
        }
        finally
        {
            for (var i = 0; i < inputs.Length; i++)
                if (owned[i]) inputs[i]?.Dispose();
        }
    }

    public void CloseSession(string sessionId)
    {
        if (_caches.TryRemove(sessionId, out var cache)) cache.Dispose();
    }

    public void Dispose()
    {
        foreach (var cache in _caches.Values) cache.Dispose();
        _caches.Clear();
        _session.Dispose();
    }

    private void ValidateActivation(TensorData activation)
    {
        if (activation.Type != _activationType)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"stage {Stage.File} takes {_activationType} activations, got {activation.Type}");
        var expectedRank = _activationType is DType.Int64 or DType.Int32 ? 2 : 3;
        if (activation.Shape.Length != expectedRank || activation.Shape[0] != 1 || activation.Shape[1] < 1
            || (expectedRank == 3 && ActivationWidth > 0 && activation.Shape[2] != ActivationWidth))
            throw new MeshException(MeshErrorCode.ShapeMismatch,
                $"stage {Stage.File} takes {(expectedRank == 2 ? "[1, t]" : $"[1, t, {ActivationWidth}]")} activations, got [{string.Join(", ", activation.Shape)}]");
    }

    /// <summary>The graph's declared dimensions, the first symbolic one (the batch) 1 and the others (past length) 0: <c>[1,h,0,d]</c>, stacked <c>[2,1,h,0,d]</c>.</summary>
    private static long[] EmptyPastShape(TensorInfo info)
    {
        var firstSymbolic = -1;
        for (var i = 0; i < info.Shape.Count && firstSymbolic < 0; i++)
            if (!long.TryParse(info.Shape[i], out _)) firstSymbolic = i;
        return info.Shape.Select((d, i) => long.TryParse(d, out var value) ? value : i == firstSymbolic ? 1 : 0).ToArray();
    }

    /// <summary>
    /// The length of a static cache: a past whose only symbolic dimension is the batch has a fixed length, which by the
    /// BNSH convention (<c>[b,h,S,d]</c>, stacked <c>[2,b,h,S,d]</c>) is the second-to-last; null for a growing past.
    /// </summary>
    private static long? StaticCacheLength(TensorInfo info)
    {
        var symbolic = info.Shape.Count(d => !long.TryParse(d, out _));
        return symbolic <= 1 && info.Shape.Count >= 2 && long.TryParse(info.Shape[^2], out var length) ? length : null;
    }

    /// <summary>A session's first past: empty when the cache grows; a static cache's full buffer, zeroed, since a graph may read every slot (masked).</summary>
    private static OrtValue EmptyPast(TensorElementType type, long[] shape)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
        value.GetTensorMutableDataAsSpan<byte>().Clear();
        return value;
    }

    private static unsafe OrtValue PinnedOrtValue(TensorData tensor, System.Buffers.MemoryHandle pinned) =>
        OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, ElementType(tensor.Type), tensor.Shape, (IntPtr)pinned.Pointer, tensor.Bytes.Length);

    /// <summary>A context tensor (positions, mask, lengths) in the integer type the graph declares (int32 or int64).</summary>
    private static OrtValue IntTensor(TensorElementType type, long[] shape, Func<int, long> valueAt)
    {
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, type, shape);
        if (type == TensorElementType.Int32)
        {
            var ints = value.GetTensorMutableDataAsSpan<int>();
            for (var i = 0; i < ints.Length; i++) ints[i] = checked((int)valueAt(i));
            return value;
        }
        var span = value.GetTensorMutableDataAsSpan<long>();
        for (var i = 0; i < span.Length; i++) span[i] = valueAt(i);
        return value;
    }

    private static TensorData FromOrtValue(OrtValue value)
    {
        var info = value.GetTensorTypeAndShape();
        var type = info.ElementDataType switch
        {
            TensorElementType.Float => DType.Float32,
            TensorElementType.Float16 => DType.Float16,
            TensorElementType.Int64 => DType.Int64,
            TensorElementType.Int32 => DType.Int32,
            var other => throw new MeshException(MeshErrorCode.ShapeMismatch, $"stage produced unsupported element type {other}"),
        };
        return TensorData.CopyToPooled(type, info.Shape, value.GetTensorDataAsSpan<byte>());
    }

    private static TensorElementType ElementType(DType type) => type switch
    {
        DType.Float32 => TensorElementType.Float,
        DType.Float16 => TensorElementType.Float16,
        DType.Int64 => TensorElementType.Int64,
        DType.Int32 => TensorElementType.Int32,
        _ => throw new MeshException(MeshErrorCode.ShapeMismatch, $"unsupported activation type {type}"),
    };

    private sealed class SessionCache : IDisposable
    {
        public OrtValue[]? Past { get; private set; }
        public int Length { get; private set; }

        public void Replace(OrtValue[] presents, int length)
        {
            var old = Past;
            Past = presents;
            Length = length;
            if (old is not null)
                foreach (var value in old) value.Dispose();
        }

        public void Dispose()
        {
            if (Past is not null)
                foreach (var value in Past) value.Dispose();
            Past = null;
        }
    }
}
