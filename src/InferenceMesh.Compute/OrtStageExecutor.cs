using System.Collections.Concurrent;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace InferenceMesh.Compute;

/// <summary>
/// Runs one stage graph on ONNX Runtime (CPU) and keeps each session's KV cache as the ONNX Runtime
/// values the stage returned, fed back on the next step without a copy. The activation is read in place (pinned);
/// the output is one copy into a pooled tensor that the caller owns. For a graph that takes padded pasts
/// (<see cref="LlamaOnnxBuilder.PastPaddingKey"/>), each session's cache is instead a buffer of a multiple of the padding
/// block, zeros after its length, fed as it is and given the step's new keys and values after each run; then sessions
/// at any positions share a run (<see cref="RunBatch"/>).
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
    private readonly int[] _pastBatchAxes;
    private readonly int _pastPadding;
    private long _batchedRuns;
    private long _batchedRows;

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
        _pastBatchAxes = stage.State.Select(s => FirstSymbolic(stage.Inputs.Single(i => i.Name == s.Past).Shape)).ToArray();
        _staticCacheLength = stage.State.Select(s => StaticCacheLength(stage.Inputs.Single(i => i.Name == s.Past))).DefaultIfEmpty(null).Min();
        _pastTypes = stage.State.Select(s => ElementType(stage.Inputs.Single(i => i.Name == s.Past).Type)).ToArray();
        _contextInfos = stage.ContextInputs.Select(c => stage.Inputs.Single(i => i.Name == c)).ToArray();
        _contextTypes = _contextInfos.Select(c => ElementType(c.Type)).ToArray();
        foreach (var context in _contextInfos)
            ContextInputs.For(context.Name, context.Shape, 0, 1);
        _activationType = stage.Inputs.Single(i => i.Name == stage.ActivationInput).Type;
        Batchable = FirstSymbolic(stage.Inputs.Single(i => i.Name == stage.ActivationInput).Shape) == 0
            && _pastBatchAxes.All(a => a >= 0)
            && _contextInfos.Where(c => ContextInputs.IsPerRow(c.Name)).All(c => FirstSymbolic(c.Shape) == 0);
        ActivationWidth = stage.Inputs.Single(i => i.Name == stage.ActivationInput).Shape.Select(d => long.TryParse(d, out var v) ? v : 0).LastOrDefault();
        _pastPadding = Batchable ? PastPaddingOf(_session, stage, _staticCacheLength) : 0;
    }

    /// <summary>
    /// The block this stage's pasts are padded to a multiple of (positions), or 0 when they are fed at their length: the
    /// graph must declare it (<see cref="LlamaOnnxBuilder.PastPaddingKey"/>), keep growing <c>[b,h,past,d]</c> caches and
    /// take no context input but positions and mask, which are all that padding changes.
    /// </summary>
    public int PastPadding => _pastPadding;

    private static int PastPaddingOf(InferenceSession session, StageDescriptor stage, long? staticCacheLength)
    {
        if (!session.ModelMetadata.CustomMetadataMap.TryGetValue(LlamaOnnxBuilder.PastPaddingKey, out var text)
            || !int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var block) || block < 1)
            return 0;
        var usable = stage.State.Count > 0 && staticCacheLength is null
            && stage.ContextInputs.All(c => c is ContextInputs.PositionIds or ContextInputs.AttentionMask)
            && stage.ContextInputs.Contains(ContextInputs.AttentionMask)
            && stage.State.All(s => stage.Inputs.Single(i => i.Name == s.Past).Shape.Count == 4);
        return usable ? block : 0;
    }

    public StageDescriptor Stage { get; }

    /// <summary>Whether this executor runs on <see cref="OrtThreadPool"/> (asked for, and the process's environment has the pool).</summary>
    public bool UsesSharedThreadPool { get; }

    /// <summary>Last dimension of the activation input (the model width), or 0 for the head's token ids.</summary>
    public long ActivationWidth { get; }

    public int CachedLength(string sessionId) => _caches.TryGetValue(sessionId, out var cache) ? cache.Length : 0;

    public TensorData Run(string sessionId, TensorData activation, int startPosition)
    {
        if (_pastPadding > 0)
        {
            Prepare(sessionId, activation, startPosition);
            var result = new StageBatchResult[1];
            RunPadded([new StageBatchItem(sessionId, activation, startPosition)], [0], result);
            return result[0].Output ?? throw result[0].Error!;
        }
        var cache = Prepare(sessionId, activation, startPosition);
        var steps = (int)activation.Shape[1];

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

    /// <summary>
    /// Runs the items with the same step length as one ONNX Runtime call of batch size b (their pasts stacked along the
    /// graph's batch axis, the presents split back per session), so the weights are read once for the group. For a graph
    /// that takes padded pasts (<see cref="PastPadding"/>) the sessions may stand at any positions: every past is padded
    /// at its end to a multiple of the block, alone or batched, and a row then computes the same bits either way. For
    /// other graphs only sessions at the same position share a call: padding a past to a neighbour's length changes the
    /// order in which its softmax sums its terms, so its output would depend on its neighbours.
    /// </summary>
    public StageBatchResult[] RunBatch(IReadOnlyList<StageBatchItem> items)
    {
        var results = new StageBatchResult[items.Count];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var groups = new Dictionary<(int Start, int Steps), List<int>>();
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            try
            {
                if (!seen.Add(item.SessionId)) throw StageBatch.Twice(item.SessionId);
                Prepare(item.SessionId, item.Activation, item.StartPosition);
                var key = (_pastPadding > 0 ? 0 : item.StartPosition, (int)item.Activation.Shape[1]);
                if (!groups.TryGetValue(key, out var rows)) groups[key] = rows = [];
                rows.Add(i);
            }
            catch (MeshException e)
            {
                results[i] = new StageBatchResult(null, e);
            }
        }
        foreach (var rows in groups.Values)
        {
            if (_pastPadding > 0)
            {
                RunPadded(items, rows, results);
                if (rows.Count > 1)
                {
                    Interlocked.Increment(ref _batchedRuns);
                    Interlocked.Add(ref _batchedRows, rows.Count);
                }
                continue;
            }
            if (rows.Count == 1 || !Batchable)
            {
                foreach (var row in rows)
                {
                    try
                    {
                        results[row] = new StageBatchResult(Run(items[row].SessionId, items[row].Activation, items[row].StartPosition), null);
                    }
                    catch (MeshException e)
                    {
                        results[row] = new StageBatchResult(null, e);
                    }
                }
                continue;
            }
            RunGroup(items, rows, results);
            Interlocked.Increment(ref _batchedRuns);
            Interlocked.Add(ref _batchedRows, rows.Count);
        }
        return results;
    }

    /// <summary>Whether this stage's graph has a symbolic batch dimension on every input, so that sessions can share a run.</summary>
    public bool Batchable { get; }

    /// <summary>ONNX Runtime runs that carried more than one session, since the executor was created.</summary>
    public long BatchedRuns => Interlocked.Read(ref _batchedRuns);

    /// <summary>Session steps those runs carried together.</summary>
    public long BatchedRows => Interlocked.Read(ref _batchedRows);

    /// <summary>Checks a step against the session's cache and the limits, creating the cache of a new session; returns it (null for a stateless stage).</summary>
    private SessionCache? Prepare(string sessionId, TensorData activation, int startPosition)
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
        return cache;
    }

    /// <summary>One run for sessions that all stand at the same position with the same step length (checked by <see cref="Prepare"/>).</summary>
    private void RunGroup(IReadOnlyList<StageBatchItem> items, List<int> rows, StageBatchResult[] results)
    {
        var batch = rows.Count;
        var first = items[rows[0]];
        var steps = (int)first.Activation.Shape[1];
        var start = first.StartPosition;
        var caches = rows.Select(r => Stage.State.Count == 0 ? null : _caches[items[r].SessionId]).ToArray();
        var inputs = new OrtValue[_inputNames.Length];
        IDisposableReadOnlyCollection<OrtValue>? outputs = null;
        try
        {
            inputs[0] = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, ElementType(first.Activation.Type), [batch, .. first.Activation.Shape[1..]]);
            var activations = inputs[0].GetTensorMutableDataAsSpan<byte>();
            var rowBytes = first.Activation.Bytes.Length;
            for (var k = 0; k < batch; k++) items[rows[k]].Activation.Bytes.Span.CopyTo(activations.Slice(k * rowBytes, rowBytes));
            var index = 1;
            for (var c = 0; c < _contextInfos.Length; c++)
            {
                var value = ContextInputs.For(_contextInfos[c].Name, _contextInfos[c].Shape, start, steps);
                // Positions, mask and lengths are per row (every row has the same ones here); scalars and cache positions are shared.
                var perRow = value.Shape.Length > 0 && ContextInputs.IsPerRow(_contextInfos[c].Name);
                var perRowCount = (int)TensorData.ElementCount(value.Shape);
                inputs[index++] = perRow
                    ? IntTensor(_contextTypes[c], [batch, .. value.Shape[1..]], i => value.ValueAt(i % perRowCount))
                    : IntTensor(_contextTypes[c], value.Shape, value.ValueAt);
            }
            for (var s = 0; s < Stage.State.Count; s++)
                inputs[index++] = StackPasts(s, caches);

            using var runOptions = new RunOptions();
            outputs = _session.Run(runOptions, _inputNames, inputs, _outputNames);
            var (type, outShape, outRowBytes) = RowsOf(outputs[0], batch);
            var bytes = outputs[0].GetTensorDataAsSpan<byte>();
            var presents = new OrtValue[batch][];
            for (var k = 0; k < batch; k++) presents[k] = new OrtValue[Stage.State.Count];
            for (var s = 0; s < Stage.State.Count; s++) SplitPresent(s, outputs[s + 1], presents);
            for (var k = 0; k < batch; k++)
            {
                caches[k]?.Replace(presents[k], start + steps);
                results[rows[k]] = new StageBatchResult(TensorData.CopyToPooled(type, outShape, bytes.Slice(k * outRowBytes, outRowBytes)), null);
            }
        }
        catch (OnnxRuntimeException e)
        {
            foreach (var row in rows)
                results[row] = new StageBatchResult(null, new MeshException(MeshErrorCode.ShapeMismatch, $"stage {Stage.File} failed on a batch of {batch}: {e.Message}", e));
        }
        finally
        {
            foreach (var input in inputs) input?.Dispose();
            outputs?.Dispose();
        }
    }

    /// <summary>A past length padded up to a multiple of the block, at least one block (so a first step pads as later ones do).</summary>
    private int Padded(int length) => Math.Max(1, (length + _pastPadding - 1) / _pastPadding) * _pastPadding;

    /// <summary>
    /// One run for sessions with the same step length at any positions, each past padded at its end to the longest's
    /// padded length (<see cref="Padded"/>), the padding masked; each session's new keys and values are then written
    /// into its buffer after its length. A lone session's buffer is fed as it is, without a copy.
    /// </summary>
    private void RunPadded(IReadOnlyList<StageBatchItem> items, List<int> rows, StageBatchResult[] results)
    {
        var batch = rows.Count;
        var first = items[rows[0]];
        var steps = (int)first.Activation.Shape[1];
        var caches = rows.Select(r => _caches[items[r].SessionId]).ToArray();
        var padded = caches.Max(c => Padded(c.Length));
        var inputs = new OrtValue[_inputNames.Length];
        var owned = new bool[_inputNames.Length];
        using var pinned = batch == 1 ? first.Activation.Bytes.Pin() : default;
        var rented = new List<RentedInput>(Stage.State.Count);
        IDisposableReadOnlyCollection<OrtValue>? outputs = null;
        try
        {
            if (batch == 1) inputs[0] = PinnedOrtValue(first.Activation, pinned);
            else
            {
                inputs[0] = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, ElementType(first.Activation.Type), [batch, .. first.Activation.Shape[1..]]);
                var activations = inputs[0].GetTensorMutableDataAsSpan<byte>();
                var rowBytes = first.Activation.Bytes.Length;
                for (var k = 0; k < batch; k++) items[rows[k]].Activation.Bytes.Span.CopyTo(activations.Slice(k * rowBytes, rowBytes));
            }
            owned[0] = true;
            var index = 1;
            for (var c = 0; c < _contextInfos.Length; c++)
            {
                owned[index] = true;
                inputs[index++] = _contextInfos[c].Name == ContextInputs.PositionIds
                    ? IntTensor(_contextTypes[c], [batch, steps], i => caches[i / steps].Length + i % steps)
                    : IntTensor(_contextTypes[c], [batch, padded + steps], i =>
                    {
                        var key = i % (padded + steps);
                        return key >= padded || key < caches[i / (padded + steps)].Length ? 1 : 0;
                    });
            }
            for (var s = 0; s < Stage.State.Count; s++)
            {
                var own = caches[0].Past?[s];
                owned[index] = !(batch == 1 && own is not null && own.GetTensorTypeAndShape().Shape[2] == padded);
                inputs[index++] = owned[index - 1] ? PaddedPasts(s, caches, padded, rented) : own!;
            }

            using var runOptions = new RunOptions();
            outputs = _session.Run(runOptions, _inputNames, inputs, _outputNames);
            var (type, outShape, outRowBytes) = RowsOf(outputs[0], batch);
            var bytes = outputs[0].GetTensorDataAsSpan<byte>();
            for (var k = 0; k < batch; k++)
            {
                for (var s = 0; s < Stage.State.Count; s++) caches[k].Append(s, Stage.State.Count, outputs[s + 1], k, padded, steps, _pastPadding);
                caches[k].Grow(steps);
                results[rows[k]] = new StageBatchResult(TensorData.CopyToPooled(type, outShape, bytes.Slice(k * outRowBytes, outRowBytes)), null);
            }
        }
        catch (OnnxRuntimeException e)
        {
            foreach (var row in rows)
                results[row] = new StageBatchResult(null, new MeshException(MeshErrorCode.ShapeMismatch, $"stage {Stage.File} failed on a batch of {batch}: {e.Message}", e));
        }
        finally
        {
            for (var i = 0; i < inputs.Length; i++)
                if (owned[i]) inputs[i]?.Dispose();
            foreach (var input in rented) input.Dispose();
            outputs?.Dispose();
        }
    }

    /// <summary>
    /// The sessions' buffers of state <paramref name="state"/> stacked into a <c>[b, h, padded, d]</c> value, zeros after each
    /// one's length, over a pooled array (added to <paramref name="rented"/>): a fresh native buffer of this size for every
    /// run costs its pages' faults each time, which on this project's VMs made a batch's run up to seven times slower.
    /// </summary>
    private OrtValue PaddedPasts(int state, SessionCache[] caches, int padded, List<RentedInput> rented)
    {
        var declared = _pastShapes[state];
        long[] shape = [caches.Length, declared[1], padded, declared[3]];
        var heads = (int)declared[1];
        var rowBytes = (int)declared[3] * DTypeOf(_pastTypes[state]).ByteSize();
        var input = new RentedInput(caches.Length * heads * padded * rowBytes);
        rented.Add(input);
        var target = input.Bytes;
        for (var k = 0; k < caches.Length; k++)
        {
            var buffer = caches[k].Past?[state];
            var source = buffer is null ? default : buffer.GetTensorDataAsSpan<byte>();
            var capacity = buffer is null ? 0 : (int)buffer.GetTensorTypeAndShape().Shape[2];
            var length = buffer is null ? 0 : caches[k].Length;
            for (var h = 0; h < heads; h++)
            {
                var row = target.Slice((k * heads + h) * padded * rowBytes, padded * rowBytes);
                source.Slice(h * capacity * rowBytes, length * rowBytes).CopyTo(row);
                row[(length * rowBytes)..].Clear();
            }
        }
        return input.Value(_pastTypes[state], shape);
    }

    /// <summary>A pooled array pinned for one run and the ONNX Runtime value over it; disposing returns the array.</summary>
    private sealed class RentedInput : IDisposable
    {
        private readonly byte[] _array;
        private readonly int _length;
        private System.Buffers.MemoryHandle _pin;

        public RentedInput(int length)
        {
            _length = length;
            _array = System.Buffers.ArrayPool<byte>.Shared.Rent(length);
            _pin = _array.AsMemory(0, length).Pin();
        }

        public Span<byte> Bytes => _array.AsSpan(0, _length);

        public unsafe OrtValue Value(TensorElementType type, long[] shape) =>
            OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, type, shape, (IntPtr)_pin.Pointer, _length);

        public void Dispose()
        {
            _pin.Dispose();
            System.Buffers.ArrayPool<byte>.Shared.Return(_array);
        }
    }

    /// <summary>A batched activation output's element type, the shape of one row of it (<c>[1, …]</c>) and the bytes of one row.</summary>
    private static (DType Type, long[] RowShape, int RowBytes) RowsOf(OrtValue output, int batch)
    {
        var info = output.GetTensorTypeAndShape();
        return (DTypeOf(info.ElementDataType), [1, .. info.Shape[1..]], output.GetTensorDataAsSpan<byte>().Length / batch);
    }

    /// <summary>The sessions' pasts of state <paramref name="state"/> stacked along the batch axis into one new value.</summary>
    private OrtValue StackPasts(int state, SessionCache?[] caches)
    {
        var axis = _pastBatchAxes[state];
        var rowShape = caches[0]!.Past?[state].GetTensorTypeAndShape().Shape ?? _pastShapes[state];
        long[] shape = [.. rowShape];
        shape[axis] = caches.Length;
        var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, _pastTypes[state], shape);
        var target = value.GetTensorMutableDataAsSpan<byte>();
        var outer = 1L;
        for (var d = 0; d < axis; d++) outer *= shape[d];
        var inner = outer == 0 ? 0 : target.Length / (int)(outer * caches.Length);
        if (caches[0]!.Past is null)
        {
            // First steps: empty growing pasts, or a static cache's zeroed buffer for each row.
            target.Clear();
            return value;
        }
        for (var k = 0; k < caches.Length; k++)
        {
            var source = caches[k]!.Past![state].GetTensorDataAsSpan<byte>();
            for (var o = 0; o < outer; o++)
                source.Slice(o * inner, inner).CopyTo(target.Slice((int)((o * caches.Length + k) * inner), inner));
        }
        return value;
    }

    /// <summary>A batched present of state <paramref name="state"/> split along the batch axis into one new value per row.</summary>
    private void SplitPresent(int state, OrtValue present, OrtValue[][] rows)
    {
        var axis = _pastBatchAxes[state];
        var shape = present.GetTensorTypeAndShape().Shape;
        var source = present.GetTensorDataAsSpan<byte>();
        var batch = rows.Length;
        var outer = 1L;
        for (var d = 0; d < axis; d++) outer *= shape[d];
        var inner = outer == 0 ? 0 : source.Length / (int)(outer * batch);
        long[] rowShape = [.. shape];
        rowShape[axis] = 1;
        for (var k = 0; k < batch; k++)
        {
            var value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, _pastTypes[state], rowShape);
            var target = value.GetTensorMutableDataAsSpan<byte>();
            for (var o = 0; o < outer; o++)
                source.Slice((int)((o * batch + k) * inner), inner).CopyTo(target.Slice((int)(o * inner), inner));
            rows[k][state] = value;
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
        var firstSymbolic = FirstSymbolic(info.Shape);
        return info.Shape.Select((d, i) => long.TryParse(d, out var value) ? value : i == firstSymbolic ? 1 : 0).ToArray();
    }

    /// <summary>The index of the first dimension that is not a number (the batch, by the exporters' convention), or -1.</summary>
    private static int FirstSymbolic(IReadOnlyList<string> shape)
    {
        for (var i = 0; i < shape.Count; i++)
            if (!long.TryParse(shape[i], out _)) return i;
        return -1;
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
        return TensorData.CopyToPooled(DTypeOf(info.ElementDataType), info.Shape, value.GetTensorDataAsSpan<byte>());
    }

    private static DType DTypeOf(TensorElementType type) => type switch
        {
            TensorElementType.Float => DType.Float32,
            TensorElementType.Float16 => DType.Float16,
            TensorElementType.Int64 => DType.Int64,
            TensorElementType.Int32 => DType.Int32,
            var other => throw new MeshException(MeshErrorCode.ShapeMismatch, $"stage produced unsupported element type {other}"),
        };

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

        /// <summary>
        /// Copies row <paramref name="row"/>'s new keys or values (positions <paramref name="padded"/>.. of a padded run's
        /// <paramref name="present"/>) into this session's buffer of state <paramref name="state"/> after its length, first
        /// moving to a larger buffer (a multiple of <paramref name="block"/>, zeros after the length) when it is full.
        /// </summary>
        public void Append(int state, int states, OrtValue present, int row, int padded, int steps, int block)
        {
            var info = present.GetTensorTypeAndShape();
            var shape = info.Shape;
            var (batch, heads, width) = ((int)shape[0], (int)shape[1], (int)shape[2]);
            var source = present.GetTensorDataAsSpan<byte>();
            var rowBytes = source.Length / (batch * heads * width);
            Past ??= new OrtValue[states];
            var needed = Length + steps;
            var buffer = Past[state];
            var capacity = buffer is null ? 0 : (int)buffer.GetTensorTypeAndShape().Shape[2];
            if (buffer is null || needed > capacity)
            {
                var grown = (needed + block - 1) / block * block;
                var larger = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, info.ElementDataType, [1, heads, grown, shape[3]]);
                var target = larger.GetTensorMutableDataAsSpan<byte>();
                target.Clear();
                if (buffer is not null)
                {
                    var old = buffer.GetTensorDataAsSpan<byte>();
                    for (var h = 0; h < heads; h++) old.Slice(h * capacity * rowBytes, Length * rowBytes).CopyTo(target.Slice(h * grown * rowBytes, Length * rowBytes));
                    buffer.Dispose();
                }
                Past[state] = buffer = larger;
                capacity = grown;
            }
            var into = buffer.GetTensorMutableDataAsSpan<byte>();
            for (var h = 0; h < heads; h++)
                source.Slice(((row * heads + h) * width + padded) * rowBytes, steps * rowBytes).CopyTo(into.Slice((h * capacity + Length) * rowBytes, steps * rowBytes));
        }

        /// <summary>Counts <paramref name="steps"/> more positions as held, once every state's buffer has them.</summary>
        public void Grow(int steps) => Length += steps;

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
