using InferenceMesh.Compute;
using InferenceMesh.Core;

namespace InferenceMesh.Node;

/// <summary>
/// Continuous batching for a stage server: steps of different sessions that are waiting at the same moment run through
/// their stages as one <see cref="IStageExecutor.RunBatch"/> call per stage, so the weights are read once for all of
/// them; sessions join and leave the batch from one round to the next. Nothing waits for company: a round starts as soon
/// as a step arrives and a round slot is free, taking whatever else is waiting then (at most <c>maxBatch</c> steps),
/// so a lone session pays no added latency. A step of more than <c>prefillChunk</c> positions runs one chunk per round
/// and goes back to the end of the queue between chunks, so a long prefill never holds the decode steps of other
/// sessions for more than one chunk.
/// </summary>
/// <remarks>
/// At most <c>maxRounds</c> rounds run at once (a round is one pass of its steps through their stages); one session has
/// at most one step here at a time (its server worker waits for each), so a session never appears in two rounds.
/// </remarks>
internal sealed class StepBatcher(int maxBatch, int prefillChunk, int maxRounds, Action<string> log)
{
    private readonly Lock _gate = new();
    private readonly Queue<Work> _waiting = new();
    private readonly HashSet<Task> _rounds = [];
    private readonly long[] _sizeCounts = new long[SizeBuckets];
    private int _running;
    private long _batches;
    private long _batchedSteps;
    private long _computeTicks;

    /// <summary>Buckets of <see cref="BatchSizeCounts"/>: batches of 1, 2–3, 4–7, …, 2^(n−1) and more.</summary>
    public const int SizeBuckets = 8;

    /// <summary>Batches run (one per round and span of stages).</summary>
    public long Batches => Interlocked.Read(ref _batches);

    /// <summary>Steps (or prefill chunks) those batches carried; divided by <see cref="Batches"/>, the mean batch size.</summary>
    public long BatchedSteps => Interlocked.Read(ref _batchedSteps);

    /// <summary>Time spent inside the executors, once per batch (not once per step).</summary>
    public TimeSpan ComputeTime => TimeSpan.FromTicks(Interlocked.Read(ref _computeTicks));

    /// <summary>Batches by size, bucket i holding sizes 2^i .. 2^(i+1) − 1 (the last one everything above).</summary>
    public long[] BatchSizeCounts()
    {
        var counts = new long[SizeBuckets];
        for (var i = 0; i < counts.Length; i++) counts[i] = Interlocked.Read(ref _sizeCounts[i]);
        return counts;
    }

    /// <summary>
    /// Queues a step and completes with its output (owned by the caller) once it has run through <paramref name="stages"/>.
    /// Fails with the step's <see cref="MeshException"/>, or with <see cref="OperationCanceledException"/> when
    /// <paramref name="closing"/> was cancelled before the step (or its next chunk) started. <paramref name="spanKey"/>
    /// tells which steps share the same stages (and may share a batch).
    /// </summary>
    public Task<TensorData> RunAsync(object spanKey, IReadOnlyList<IStageExecutor> stages, string sessionId, TensorData activation, int startPosition, CancellationToken closing)
    {
        var work = new Work(spanKey, stages, sessionId, activation, startPosition, closing);
        lock (_gate)
        {
            _waiting.Enqueue(work);
            StartRounds();
        }
        return work.Completion.Task;
    }

    /// <summary>Completes when no round is running (every queued step has been answered). Not cancellable.</summary>
    public async Task DrainAsync()
    {
        while (true)
        {
            Task[] rounds;
            lock (_gate)
            {
                _rounds.RemoveWhere(r => r.IsCompleted);
                rounds = [.. _rounds];
            }
            if (rounds.Length == 0) return;
            await Task.WhenAll(rounds).ConfigureAwait(false);
        }
    }

    /// <summary>Starts rounds while slots are free and steps wait. Called under <see cref="_gate"/>.</summary>
    private void StartRounds()
    {
        while (_running < maxRounds && _waiting.Count > 0)
        {
            var taken = new List<Work>(Math.Min(maxBatch, _waiting.Count));
            while (taken.Count < maxBatch && _waiting.TryDequeue(out var work)) taken.Add(work);
            _running++;
            _rounds.Add(Task.Run(() => RunRound(taken)));
        }
    }

    private void RunRound(List<Work> taken)
    {
        try
        {
            foreach (var span in taken.GroupBy(w => w.SpanKey))
                RunSpan(span.ToList());
        }
        finally
        {
            lock (_gate)
            {
                _running--;
                // A prefill with chunks left goes behind every step that arrived meanwhile.
                foreach (var work in taken)
                    if (!work.Completion.Task.IsCompleted) _waiting.Enqueue(work);
                _rounds.RemoveWhere(r => r.IsCompleted);
                StartRounds();
            }
        }
    }

    private void RunSpan(List<Work> works)
    {
        var live = new List<Work>(works.Count);
        foreach (var work in works)
        {
            if (work.Closing.IsCancellationRequested) work.Fail(new OperationCanceledException(work.Closing));
            else live.Add(work);
        }
        if (live.Count == 0) return;
        Count(live.Count);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var current = new TensorData?[live.Count];
        var inputs = new TensorData[live.Count];
        try
        {
            for (var k = 0; k < live.Count; k++) current[k] = inputs[k] = live[k].NextChunk(prefillChunk);
            foreach (var stage in live[0].Stages)
            {
                var rows = Enumerable.Range(0, live.Count).Where(k => current[k] is not null).ToList();
                if (rows.Count == 0) break;
                var results = stage.RunBatch(rows.Select(k => new StageBatchItem(live[k].SessionId, current[k]!, live[k].ChunkStart)).ToList());
                for (var i = 0; i < rows.Count; i++)
                {
                    var k = rows[i];
                    // Intermediate outputs are this loop's alone; each chunk's input is disposed below.
                    if (!ReferenceEquals(current[k], inputs[k])) current[k]!.Dispose();
                    current[k] = results[i].Output;
                    if (results[i].Error is { } error) live[k].Fail(error);
                }
            }
            for (var k = 0; k < live.Count; k++)
                if (current[k] is { } output) live[k].ChunkDone(output);
        }
        catch (Exception e)
        {
            log($"a batch of {live.Count} failed: {e}");
            for (var k = 0; k < live.Count; k++)
            {
                if (current[k] is { } output && !ReferenceEquals(output, inputs[k])) output.Dispose();
                live[k].Fail(e);
            }
        }
        finally
        {
            Interlocked.Add(ref _computeTicks, System.Diagnostics.Stopwatch.GetElapsedTime(started).Ticks);
            for (var k = 0; k < live.Count; k++)
                if (inputs[k] is { } input && !ReferenceEquals(input, live[k].Activation)) input.Dispose();
        }
    }

    private void Count(int size)
    {
        Interlocked.Increment(ref _batches);
        Interlocked.Add(ref _batchedSteps, size);
        Interlocked.Increment(ref _sizeCounts[Math.Min(SizeBuckets - 1, 31 - int.LeadingZeroCount(size))]);
    }

    /// <summary>One queued step: its whole input, how far its chunks have got, and the outputs of those done.</summary>
    private sealed class Work(object spanKey, IReadOnlyList<IStageExecutor> stages, string sessionId, TensorData activation, int startPosition, CancellationToken closing)
    {
        private readonly List<TensorData> _chunkOutputs = [];
        private readonly int _positions = activation.Shape.Length > 1 ? (int)activation.Shape[1] : 1;
        private int _done;
        private int _chunk;

        public object SpanKey { get; } = spanKey;
        public IReadOnlyList<IStageExecutor> Stages { get; } = stages;
        public string SessionId { get; } = sessionId;
        public TensorData Activation { get; } = activation;
        public CancellationToken Closing { get; } = closing;
        public TaskCompletionSource<TensorData> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>The position the current chunk starts at.</summary>
        public int ChunkStart => startPosition + _done;

        /// <summary>The next chunk's input: the whole activation when it fits in one chunk, else a new tensor of its next positions.</summary>
        public TensorData NextChunk(int chunkSize)
        {
            _chunk = Math.Min(chunkSize, _positions - _done);
            return _done == 0 && _chunk == _positions ? Activation : StageBatch.Slice(Activation, _done, _chunk);
        }

        public void ChunkDone(TensorData output)
        {
            _done += _chunk;
            if (_done < _positions)
            {
                _chunkOutputs.Add(output);
                return;
            }
            if (_chunkOutputs.Count == 0)
            {
                Completion.TrySetResult(output);
                return;
            }
            _chunkOutputs.Add(output);
            try
            {
                Completion.TrySetResult(StageBatch.Concat(_chunkOutputs));
            }
            finally
            {
                DisposeChunks();
            }
        }

        public void Fail(Exception error)
        {
            DisposeChunks();
            Completion.TrySetException(error);
        }

        private void DisposeChunks()
        {
            foreach (var chunk in _chunkOutputs) chunk.Dispose();
            _chunkOutputs.Clear();
        }
    }
}
