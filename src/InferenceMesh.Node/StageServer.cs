using System.Diagnostics;
using System.Collections.Concurrent;
using System.Threading.Channels;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.P2P.Identity;
using InferenceMesh.Protocol;

namespace InferenceMesh.Node;

/// <summary>
/// Serves the stage protocol for one node: opens sessions under a KV-cache byte budget, runs steps through
/// the served stages in order per session (sessions in parallel), replies to the client and hands a chained
/// step on to the next server of its route, and turns every bad request into a typed <see cref="StageError"/>
/// without disturbing other sessions.
/// </summary>
/// <remarks>
/// A session closes when its client sends <see cref="CloseSession"/>, when the stream it was opened on ends,
/// when it has been idle for <see cref="NodeOptions.SessionIdleTimeout"/> (on the injected clock) and when the
/// server is disposed. Closing stops the session's queue, lets a step already inside an executor finish, fails
/// the steps still queued (an <see cref="StageErrorCode.UnknownSession"/> error to the client) without running
/// them, waits for the session's worker, and only then drops the executors' KV state and the reservation.
/// </remarks>
public sealed class StageServer : IAsyncDisposable
{
    private readonly ServedSpan _span;
    private readonly NodeOptions _options;
    private readonly IStageConnector _connector;
    private readonly Action<string> _log;
    private readonly TimeProvider _timeProvider;
    private readonly Ed25519KeyPair? _identity;
    private readonly StageFault? _fault;
    private readonly int _maxStepPositions;
    private readonly ConcurrentDictionary<string, ServerSession> _sessions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lazy<Task<NextHop>>> _nextHops = new(StringComparer.Ordinal);
    private readonly List<Task> _relays = [];
    private readonly SemaphoreSlim _compute;
    private readonly StepBatcher? _batcher;
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationToken _stoppingToken;
    private readonly Task _expiry;
    private readonly Lock _budgetLock = new();
    private long _reservedBytes;
    // KV bytes reserved and sessions held per remote peer, for NodeOptions.KvSharePerPeer; guarded by _budgetLock.
    private readonly Dictionary<string, (long Bytes, int Sessions)> _heldByPeer = new(StringComparer.Ordinal);
    private long _stepsRun;
    private long _positionsRun;
    private long _computeTicks;
    private bool _disposed;

    /// <param name="log">Receives one line per notable event (a stream failing, a session expiring).</param>
    /// <param name="timeProvider">The clock of session idleness and idle expiry; <see cref="TimeProvider.System"/> when null.</param>
    /// <param name="identity">Signs a <see cref="StepCommitment"/> on every step result; null sends results without one. Not disposed here.</param>
    /// <param name="fault">A lie to tell, for verification tests; refused unless <see cref="StageFault.AllowVariable"/> is 1.</param>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.InvalidArgument"/> for a fault the environment does not allow.</exception>
    public StageServer(ServedSpan span, NodeOptions options, IStageConnector connector, Action<string>? log = null, TimeProvider? timeProvider = null,
        Ed25519KeyPair? identity = null, StageFault? fault = null)
    {
        fault?.EnsureAllowed();
        _identity = identity;
        _fault = fault;
        _span = span;
        _maxStepPositions = span.Manifest.MaxStepPositions;
        _options = options;
        _connector = connector;
        _log = log ?? (_ => { });
        _timeProvider = timeProvider ?? TimeProvider.System;
        _compute = new SemaphoreSlim(options.MaxConcurrentSteps, options.MaxConcurrentSteps);
        if (options.MaxBatchSize < 1 || options.PrefillChunk < 1)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"max batch size {options.MaxBatchSize} and prefill chunk {options.PrefillChunk} must be at least 1");
        // A fault injector runs its own loop over the stages, one session at a time. One batch runs at a time: a second
        // round beside the first would split the steps that are ready into two smaller batches, each reading every weight.
        if (options.MaxBatchSize > 1 && fault is null)
            _batcher = new StepBatcher(options.MaxBatchSize, options.PrefillChunk, maxRounds: 1, _log);
        _stoppingToken = _stopping.Token;
        _expiry = ExpireIdleSessionsAsync();
    }

    public BlockRange Blocks => _span.Blocks;

    /// <summary>Sessions holding KV state, closing ones included until their state is freed.</summary>
    public int SessionCount => _sessions.Count;

    /// <summary>Bytes of the KV budget reserved by the sessions in <see cref="SessionCount"/>.</summary>
    public long ReservedKvBytes => Interlocked.Read(ref _reservedBytes);

    public long FreeKvBytes => _options.KvBudgetBytes - ReservedKvBytes;

    /// <summary>Steps run through the stages since the server started (each is one executor pass over the session's blocks).</summary>
    public long StepsRun => Interlocked.Read(ref _stepsRun);

    /// <summary>Positions (tokens) those steps carried.</summary>
    public long PositionsRun => Interlocked.Read(ref _positionsRun);

    /// <summary>Time spent inside the executors for those steps (a batch counted once, however many steps it carried).</summary>
    public TimeSpan ComputeTime => TimeSpan.FromTicks(Interlocked.Read(ref _computeTicks)) + (_batcher?.ComputeTime ?? TimeSpan.Zero);

    /// <summary>Whether steps of different sessions run batched (<see cref="NodeOptions.MaxBatchSize"/> above 1).</summary>
    public bool Batching => _batcher is not null;

    /// <summary>Batches run (0 with batching off): one per round of ready steps and span of stages.</summary>
    public long BatchesRun => _batcher?.Batches ?? 0;

    /// <summary>Steps and prefill chunks those batches carried; over <see cref="BatchesRun"/>, the mean batch size.</summary>
    public long BatchedSteps => _batcher?.BatchedSteps ?? 0;

    /// <summary>Executor runs that carried more than one session (ONNX Runtime batches sessions at the same position), over all served stages.</summary>
    public long ExecutorBatchedRuns => _span.Stages.OfType<OrtStageExecutor>().Sum(s => s.BatchedRuns);

    /// <summary>Session steps those executor runs carried.</summary>
    public long ExecutorBatchedRows => _span.Stages.OfType<OrtStageExecutor>().Sum(s => s.BatchedRows);

    /// <summary>Batches by size: element i counts batches of 2^i .. 2^(i+1) − 1 steps, the last element everything above.</summary>
    public long[] BatchSizeCounts() => _batcher?.BatchSizeCounts() ?? new long[StepBatcher.SizeBuckets];

    /// <summary>
    /// Serves one inbound stage stream until the peer closes it or sends something malformed (that closes only
    /// this stream). Owns the channel: the sessions opened on it are closed, then the channel, when serving ends.
    /// The stream's next message is read only once a <see cref="CloseSession"/> has freed that session's state, so it
    /// sees the room given back. Safe to cancel: serving ends as if the stream had, once the steps already inside
    /// executors for its sessions have finished.
    /// </summary>
    public Task ServeAsync(StageChannel channel, CancellationToken cancellation = default) => ServeAsync(channel, null, cancellation);

    /// <summary>
    /// Serves a stream as <see cref="ServeAsync(StageChannel, CancellationToken)"/> does, for the remote
    /// <paramref name="peer"/> (a PeerId, or null when unknown): the sessions of one peer, over all its streams,
    /// reserve at most <see cref="NodeOptions.KvSharePerPeer"/> of the KV budget, so one client cannot fill it.
    /// </summary>
    public async Task ServeAsync(StageChannel channel, string? peer, CancellationToken cancellation = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, _stoppingToken);
        var owned = new List<ServerSession>();
        try
        {
            while (await channel.ReceiveAsync(linked.Token).ConfigureAwait(false) is { } message)
            {
                switch (message)
                {
                    case OpenSession open:
                        if (await OpenAsync(channel, open, peer).ConfigureAwait(false) is { } session)
                        {
                            owned.RemoveAll(s => s.Closed.IsCompleted);
                            owned.Add(session);
                        }
                        break;
                    case Step step:
                        await EnqueueAsync(channel, step).ConfigureAwait(false);
                        break;
                    case CloseSession close:
                        await CloseAsync(close.SessionId).ConfigureAwait(false);
                        break;
                    case FetchOutputs fetch:
                        await SendFetchedAsync(channel, fetch).ConfigureAwait(false);
                        break;
                    default:
                        await SendQuietlyAsync(channel, new StageError(0, "", StageErrorCode.Malformed, $"a server does not accept '{message.Kind}' messages")).ConfigureAwait(false);
                        break;
                }
            }
        }
        catch (MeshException e)
        {
            _log($"stage stream closed: {e.Message}");
            await SendQuietlyAsync(channel, new StageError(0, "", StageErrorCode.Malformed, e.Message)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            _log($"stage stream failed: {e.Message}");
        }
        finally
        {
            await Task.WhenAll(owned.Select(CloseSessionAsync)).ConfigureAwait(false);
            await channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Closes a session as described on <see cref="StageServer"/>; unknown ids are ignored. Completes when the
    /// session's worker has finished and its KV state and reservation are freed; not cancellable.
    /// </summary>
    public Task CloseAsync(string sessionId) =>
        _sessions.TryGetValue(sessionId, out var session) ? CloseSessionAsync(session) : Task.CompletedTask;

    private async Task<ServerSession?> OpenAsync(StageChannel channel, OpenSession open, string? peer)
    {
        string? refusal = null;
        var code = StageErrorCode.LimitExceeded;
        var stages = _span.StagesFor(open.Blocks);
        var maxSequence = _span.Manifest.Config?.MaxSequence ?? int.MaxValue;
        ServerSession? session = null;
        if (open.ModelId != _span.Manifest.ModelId)
            (refusal, code) = ($"this node serves model {_span.Manifest.ModelId}, not {open.ModelId}", StageErrorCode.UnknownModel);
        else if (stages is null)
            (refusal, code) = ($"this node serves blocks {_span.Blocks} in stages {string.Join(' ', _span.Stages.Select(s => s.Stage.Blocks))}; {open.Blocks} is not a run of them", StageErrorCode.BlocksNotServed);
        else if (open.MaxLength < 1 || open.MaxLength > maxSequence)
            (refusal, code) = ($"max length {open.MaxLength} is outside 1..{maxSequence}", StageErrorCode.ContextOverflow);
        else
        {
            var reservation = _span.KvBytesForSession(open.Blocks, open.MaxLength) + (open.KeepOutputs ? _span.OutputBytesForSession(open.MaxLength) : 0);
            lock (_budgetLock)
            {
                if (_disposed)
                    (refusal, code) = ("this node is shutting down", StageErrorCode.Overloaded);
                else if (_sessions.ContainsKey(open.SessionId))
                    (refusal, code) = ($"session {open.SessionId} is already open", StageErrorCode.Malformed);
                else if (_sessions.Count >= _options.MaxSessions)
                    refusal = $"this node already holds {_options.MaxSessions} sessions";
                else if (_reservedBytes + reservation > _options.KvBudgetBytes)
                    refusal = $"KV cache budget full: session needs {reservation} bytes, {_options.KvBudgetBytes - _reservedBytes} of {_options.KvBudgetBytes} free";
                else if (peer is not null && _heldByPeer.GetValueOrDefault(peer) is var held
                         && (held.Bytes + reservation > _options.KvBytesPerPeer || held.Sessions + 1 > _options.SessionsPerPeer))
                {
                    refusal = $"KV cache budget share of peer {peer} full: session needs {reservation} bytes, the peer holds {held.Sessions} sessions and {held.Bytes} bytes of its {_options.SessionsPerPeer} and {_options.KvBytesPerPeer}";
                    _log($"limit KvSharePerPeer hit: {refusal}");
                }
                else
                {
                    _reservedBytes += reservation;
                    if (peer is not null)
                    {
                        var before = _heldByPeer.GetValueOrDefault(peer);
                        _heldByPeer[peer] = (before.Bytes + reservation, before.Sessions + 1);
                    }
                    session = new ServerSession(open.SessionId, open.Blocks, stages, reservation, channel, _options.MaxQueuedStepsPerSession, _timeProvider.GetTimestamp(), peer, open.KeepOutputs);
                    session.Worker = RunSessionAsync(session);
                    _sessions[open.SessionId] = session;
                }
            }
        }
        if (session is null)
        {
            await SendQuietlyAsync(channel, new StageError(open.RequestId, open.SessionId, code, refusal!)).ConfigureAwait(false);
            return null;
        }
        await SendQuietlyAsync(channel, new SessionOpened(open.RequestId, open.SessionId)).ConfigureAwait(false);
        return session;
    }

    private async Task EnqueueAsync(StageChannel channel, Step step)
    {
        StageError? refusal = null;
        if (!_sessions.TryGetValue(step.SessionId, out var session) || session.IsClosing)
            refusal = new StageError(step.StepId, step.SessionId, StageErrorCode.UnknownSession, $"no session {step.SessionId} on this node");
        else if (step.Activation.Shape is [_, var positions, ..] && positions > _maxStepPositions)
            refusal = new StageError(step.StepId, step.SessionId, StageErrorCode.ShapeMismatch,
                $"a step of {positions} positions; this model's steps carry at most {_maxStepPositions} (its export declares its token input so)");
        else if (!session.TryEnqueue(step))
            refusal = session.IsClosing
                ? ClosedBeforeRun(session, step)
                : new StageError(step.StepId, step.SessionId, StageErrorCode.Overloaded, $"session {step.SessionId} already has {_options.MaxQueuedStepsPerSession} steps queued");
        if (refusal is null) return;
        // A refused step never reaches a worker, whose loop returns the pooled buffers of the steps it takes.
        step.Activation.Dispose();
        await SendQuietlyAsync(channel, refusal).ConfigureAwait(false);
    }

    private async Task RunSessionAsync(ServerSession session)
    {
        await foreach (var step in session.Queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            TensorData? output = null;
            var kept = false;
            try
            {
                if ((output = await ComputeAsync(session, step).ConfigureAwait(false)) is null) continue;
                // The client keeps every span's output as the next span's replay input and for checks, even when the step goes
                // on. The next hop gets it first: the client's copy leaves the critical path. A NextHopFailed error about this
                // step still follows the copy on the client's stream, so recovery finds the failed hop's input.
                var forwardFailure = step.Route.Count > 0 ? await ForwardAsync(session, step, output).ConfigureAwait(false) : null;
                if (session.KeepsOutputs)
                {
                    session.Keep(step.StartPosition, output);
                    kept = true;
                }
                // A session that keeps its outputs here gets, for a step gone on, a receipt: the client fetches the output only if a
                // recovery needs it. A step that could not go on returns its output as ever, since the client must resend it.
                StageMessage reply = kept && step.Route.Count > 0 && forwardFailure is null
                    ? new StepReceipt(step.StepId, session.Id, session.Blocks.End, (int)output.Shape[1], Commit(session, step, output))
                    : new StepResult(step.StepId, session.Id, session.Blocks.End, output, Commit(session, step, output));
                await SendQuietlyAsync(session.Owner, reply).ConfigureAwait(false);
                if (forwardFailure is not null) await SendQuietlyAsync(session.Owner, forwardFailure).ConfigureAwait(false);
            }
            finally
            {
                session.StepDone(_timeProvider.GetTimestamp());
                // Both sends have written the output into their streams and the commitment hashed the input: the
                // pooled buffers go back (a fault injector, like the honest loop, hands back a tensor of its own),
                // except an output the session keeps, which goes back when it is replaced or the session closes.
                var outputIsInput = ReferenceEquals(output, step.Activation);
                if (output is not null && !kept && !outputIsInput) output.Dispose();
                if (!(kept && outputIsInput)) step.Activation.Dispose();
            }
        }
    }

    /// <summary>Answers a <see cref="FetchOutputs"/> from the stream the session was opened on: the kept outputs, or a typed error.</summary>
    private async Task SendFetchedAsync(StageChannel channel, FetchOutputs fetch)
    {
        StageMessage reply;
        if (!_sessions.TryGetValue(fetch.SessionId, out var session) || session.IsClosing || session.Owner != channel)
            reply = new StageError(fetch.RequestId, fetch.SessionId, StageErrorCode.UnknownSession, $"no session {fetch.SessionId} on this stream");
        else if (!session.KeepsOutputs)
            reply = new StageError(fetch.RequestId, fetch.SessionId, StageErrorCode.Malformed, $"session {fetch.SessionId} was not opened to keep its outputs");
        else if (fetch.Positions < 1 || fetch.StartPosition < 0)
            reply = new StageError(fetch.RequestId, fetch.SessionId, StageErrorCode.ShapeMismatch, $"positions {fetch.StartPosition} +{fetch.Positions} are not a range");
        else if ((long)fetch.Positions * _span.OutputBytesForSession(1) > channel.Limits.MaxFrameBytes - 1024)
            reply = new StageError(fetch.RequestId, fetch.SessionId, StageErrorCode.LimitExceeded,
                $"{fetch.Positions} positions do not fit one {channel.Limits.MaxFrameBytes}-byte frame; fetch them in pieces");
        else if (session.Fetch(fetch.StartPosition, fetch.Positions) is { } outputs)
            reply = new StepResult(fetch.RequestId, session.Id, session.Blocks.End, outputs);
        else
            reply = new StageError(fetch.RequestId, fetch.SessionId, StageErrorCode.ShapeMismatch,
                $"session {fetch.SessionId} keeps outputs for positions 0..{session.KeptPositions}, not {fetch.StartPosition} +{fetch.Positions}");
        await SendQuietlyAsync(channel, reply).ConfigureAwait(false);
    }

    /// <summary>Signs what this step received and returned (two SHA-256 hashes and one signature: microseconds next to the step).</summary>
    private StepCommitment? Commit(ServerSession session, Step step, TensorData output)
    {
        if (_identity is null) return null;
        var positions = step.Activation.Shape.Length > 1 ? (int)step.Activation.Shape[1] : 1;
        var inputHash = StepCommitment.Hash(step.Activation);
        var outputHash = StepCommitment.Hash(output);
        var signed = StepCommitment.SignedBytes(_span.Manifest.ModelId, session.Id, session.Blocks.Start, session.Blocks.End, step.StartPosition, positions, inputHash, outputHash);
        return new StepCommitment(session.Blocks.Start, step.StartPosition, positions, inputHash, outputHash, _identity.Sign(signed));
    }

    /// <summary>Runs the step through the session's stages, or tells the session's client why not and returns null.</summary>
    private async Task<TensorData?> ComputeAsync(ServerSession session, Step step)
    {
        if (_batcher is not null) return await ComputeBatchedAsync(session, step).ConfigureAwait(false);
        try
        {
            await _compute.WaitAsync(session.Closing).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await SendQuietlyAsync(session.Owner, ClosedBeforeRun(session, step)).ConfigureAwait(false);
            return null;
        }
        StageError refusal;
        try
        {
            if (session.IsClosing) refusal = ClosedBeforeRun(session, step);
            else
            {
                var started = Stopwatch.GetTimestamp();
                var output = step.Activation;
                if (_fault is not null) output = _fault.Run(session.Stages, session.Id, output, step.StartPosition);
                else
                    foreach (var stage in session.Stages)
                    {
                        var next = stage.Run(session.Id, output, step.StartPosition);
                        // Intermediate outputs of a span's stages are this loop's alone; the step's input is disposed by its caller.
                        if (!ReferenceEquals(output, step.Activation) && !ReferenceEquals(next, output)) output.Dispose();
                        output = next;
                    }
                Interlocked.Increment(ref _stepsRun);
                Interlocked.Add(ref _positionsRun, step.Activation.Shape.Length > 1 ? step.Activation.Shape[1] : 1);
                Interlocked.Add(ref _computeTicks, Stopwatch.GetElapsedTime(started).Ticks);
                return output;
            }
        }
        catch (MeshException e)
        {
            refusal = new StageError(step.StepId, session.Id, ErrorCode(e.Code), e.Message);
        }
        catch (Exception e)
        {
            _log($"session {session.Id} step {step.StepId} failed: {e}");
            refusal = new StageError(step.StepId, session.Id, StageErrorCode.Internal, $"the stage failed: {e.Message}");
        }
        finally
        {
            _compute.Release();
        }
        await SendQuietlyAsync(session.Owner, refusal).ConfigureAwait(false);
        return null;
    }

    /// <summary>Runs the step in a batch with whatever other sessions' steps are ready (<see cref="StepBatcher"/>).</summary>
    private async Task<TensorData?> ComputeBatchedAsync(ServerSession session, Step step)
    {
        StageError refusal;
        try
        {
            var output = await _batcher!.RunAsync(session.Blocks, session.Stages, session.Id, step.Activation, step.StartPosition, session.Closing).ConfigureAwait(false);
            Interlocked.Increment(ref _stepsRun);
            Interlocked.Add(ref _positionsRun, step.Activation.Shape.Length > 1 ? step.Activation.Shape[1] : 1);
            return output;
        }
        catch (OperationCanceledException)
        {
            refusal = ClosedBeforeRun(session, step);
        }
        catch (MeshException e)
        {
            refusal = new StageError(step.StepId, session.Id, ErrorCode(e.Code), e.Message);
        }
        catch (Exception e)
        {
            _log($"session {session.Id} step {step.StepId} failed: {e}");
            refusal = new StageError(step.StepId, session.Id, StageErrorCode.Internal, $"the stage failed: {e.Message}");
        }
        await SendQuietlyAsync(session.Owner, refusal).ConfigureAwait(false);
        return null;
    }

    private static StageError ClosedBeforeRun(ServerSession session, Step step) =>
        new(step.StepId, session.Id, StageErrorCode.UnknownSession, $"session {session.Id} was closed before step {step.StepId} ran");

    /// <summary>
    /// Sends the step's output to the first hop of its route as a step of that hop's session. Whatever goes wrong
    /// there (the connector is pluggable) is the next hop's failure: the error for the session's client is returned, null when sent.
    /// </summary>
    private async Task<StageError?> ForwardAsync(ServerSession session, Step step, TensorData output)
    {
        var hop = step.Route[0];
        var entry = _nextHops.GetOrAdd(hop.PeerId, static (peer, state) => new Lazy<Task<NextHop>>(() => state.Server.ConnectNextHopAsync(peer, state.Addresses)), (Server: this, hop.Addresses));
        NextHop? next = null;
        try
        {
            next = await entry.Value.ConfigureAwait(false);
            if (!next.TryAcquire())
            {
                next = null;
                throw new IOException("the stream to it has closed");
            }
            await next.Channel.SendAsync(new Step(step.StepId, hop.SessionId, step.StartPosition, output, step.Route.Skip(1).ToList())).ConfigureAwait(false);
            return null;
        }
        catch (Exception e)
        {
            _nextHops.TryRemove(KeyValuePair.Create(hop.PeerId, entry));
            return new StageError(step.StepId, session.Id, StageErrorCode.NextHopFailed, $"next hop {hop.PeerId} failed: {e.Message}");
        }
        finally
        {
            if (next is not null) await next.ReleaseAsync().ConfigureAwait(false);
        }
    }

    private async Task<NextHop> ConnectNextHopAsync(string peer, IReadOnlyList<string> addresses)
    {
        var hop = new NextHop(await _connector.ConnectAsync(peer, addresses, _stoppingToken).ConfigureAwait(false));
        var relay = RelayNextHopErrorsAsync(peer, hop);
        lock (_relays)
        {
            _relays.RemoveAll(r => r.IsCompleted);
            _relays.Add(relay);
        }
        return hop;
    }

    /// <summary>
    /// The next hop reports errors about the steps handed to it on our stream to it; they belong to the session's
    /// client. When that stream ends, the hop is forgotten and its channel closed once no step is being sent on it.
    /// </summary>
    private async Task RelayNextHopErrorsAsync(string peer, NextHop hop)
    {
        try
        {
            while (await hop.Channel.ReceiveAsync(_stoppingToken).ConfigureAwait(false) is { } message)
            {
                if (message is StageError error && _sessions.TryGetValue(error.SessionId, out var session) && !session.IsClosing)
                    await SendQuietlyAsync(session.Owner, error with { Code = StageErrorCode.NextHopFailed, Message = $"next hop {peer}: {error.Message}" }).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is MeshException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            if (_nextHops.TryGetValue(peer, out var entry) && entry.IsValueCreated && entry.Value.IsCompletedSuccessfully && entry.Value.Result == hop)
                _nextHops.TryRemove(KeyValuePair.Create(peer, entry));
            await hop.RetireAsync().ConfigureAwait(false);
        }
    }

    private async Task CloseSessionAsync(ServerSession session)
    {
        if (!session.BeginClose())
        {
            await session.Closed.ConfigureAwait(false);
            return;
        }
        try
        {
            await session.Worker.ConfigureAwait(false);
        }
        finally
        {
            foreach (var stage in session.Stages) stage.CloseSession(session.Id);
            session.DropKept();
            lock (_budgetLock)
            {
                _sessions.TryRemove(KeyValuePair.Create(session.Id, session));
                _reservedBytes -= session.Reservation;
                if (session.Peer is { } owner)
                {
                    var held = _heldByPeer[owner];
                    if (held.Sessions <= 1)
                        _heldByPeer.Remove(owner);
                    else
                        _heldByPeer[owner] = (held.Bytes - session.Reservation, held.Sessions - 1);
                }
            }
            session.EndClose();
        }
    }

    private async Task ExpireIdleSessionsAsync()
    {
        var timeout = _options.SessionIdleTimeout;
        var period = TimeSpan.FromMilliseconds(Math.Clamp(timeout.TotalMilliseconds / 4, 50, 10_000));
        using var timer = new PeriodicTimer(period, _timeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(_stoppingToken).ConfigureAwait(false))
                foreach (var session in _sessions.Values)
                    if (session.IsIdle(_timeProvider, timeout))
                    {
                        _log($"session {session.Id} idle for {timeout}: closed");
                        await CloseSessionAsync(session).ConfigureAwait(false);
                    }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static StageErrorCode ErrorCode(MeshErrorCode code) => code switch
    {
        MeshErrorCode.ShapeMismatch => StageErrorCode.ShapeMismatch,
        MeshErrorCode.ContextOverflow => StageErrorCode.ContextOverflow,
        MeshErrorCode.LimitExceeded => StageErrorCode.LimitExceeded,
        MeshErrorCode.UnknownSession => StageErrorCode.UnknownSession,
        _ => StageErrorCode.Internal,
    };

    private async Task SendQuietlyAsync(StageChannel channel, StageMessage message)
    {
        try
        {
            await channel.SendAsync(message).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException or ObjectDisposedException or InvalidOperationException or OperationCanceledException)
        {
            _log($"could not send {message.Kind}: {e.Message}");
        }
    }

    /// <summary>
    /// Refuses new sessions, closes every session (waiting for the steps inside executors), then stops idle
    /// expiry and the next-hop streams and waits for them. Not cancellable.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        lock (_budgetLock)
        {
            if (_disposed) return;
            _disposed = true;
        }
        _stopping.Cancel();
        await Task.WhenAll(_sessions.Values.Select(CloseSessionAsync)).ConfigureAwait(false);
        await _expiry.ConfigureAwait(false);
        if (_batcher is not null) await _batcher.DrainAsync().ConfigureAwait(false);
        Task[] relays;
        lock (_relays) relays = [.. _relays];
        await Task.WhenAll(relays).ConfigureAwait(false);
        _compute.Dispose();
        _stopping.Dispose();
    }

    /// <summary>A stream to the next server of chained routes, shared by the sessions that hand steps to it.</summary>
    private sealed class NextHop(StageChannel channel)
    {
        private readonly Lock _gate = new();
        private int _senders;
        private bool _retired;

        public StageChannel Channel => channel;

        /// <summary>False once the stream has ended; otherwise the caller may send until <see cref="ReleaseAsync"/>.</summary>
        public bool TryAcquire()
        {
            lock (_gate)
            {
                if (_retired) return false;
                _senders++;
                return true;
            }
        }

        public ValueTask ReleaseAsync()
        {
            lock (_gate)
                if (--_senders > 0 || !_retired) return ValueTask.CompletedTask;
            return channel.DisposeAsync();
        }

        /// <summary>No new sends; the channel is disposed now, or by the last sender still using it.</summary>
        public ValueTask RetireAsync()
        {
            lock (_gate)
            {
                if (_retired) return ValueTask.CompletedTask;
                _retired = true;
                if (_senders > 0) return ValueTask.CompletedTask;
            }
            return channel.DisposeAsync();
        }
    }

    private sealed class ServerSession(string id, BlockRange blocks, IReadOnlyList<IStageExecutor> stages, long reservation, StageChannel owner, int queueCapacity, long openedAt, string? peer,
        bool keepsOutputs)
    {
        // Outputs kept for FetchOutputs, by start position, in order; the session's worker adds and its stream's reader fetches.
        private readonly List<(int Start, TensorData Output)> _kept = [];
        private readonly CancellationTokenSource _closing = new();
        private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _lastUsed = openedAt;
        private int _pending;
        private int _closeStarted;

        public string Id { get; } = id;
        public BlockRange Blocks { get; } = blocks;
        public IReadOnlyList<IStageExecutor> Stages { get; } = stages;
        public long Reservation { get; } = reservation;
        public StageChannel Owner { get; } = owner;
        public string? Peer { get; } = peer;
        public Channel<Step> Queue { get; } = Channel.CreateBounded<Step>(new BoundedChannelOptions(queueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        public Task Worker { get; set; } = Task.CompletedTask;
        public bool KeepsOutputs { get; } = keepsOutputs;

        /// <summary>Positions from 0 whose outputs are kept.</summary>
        public int KeptPositions
        {
            get
            {
                lock (_kept) return KeptPositionsLocked();
            }
        }

        /// <summary>Keeps a step's output (the session owns it from now on); a step run again from an earlier position replaces what followed it.</summary>
        public void Keep(int start, TensorData output)
        {
            lock (_kept)
            {
                while (_kept.Count > 0 && _kept[^1].Start >= start)
                {
                    _kept[^1].Output.Dispose();
                    _kept.RemoveAt(_kept.Count - 1);
                }
                _kept.Add((start, output));
            }
        }

        /// <summary>The kept outputs of positions [<paramref name="start"/>, +<paramref name="count"/>) as one tensor <c>[1, count, width]</c>; null when not all are kept.</summary>
        public TensorData? Fetch(int start, int count)
        {
            lock (_kept)
            {
                if (_kept.Count == 0 || start + (long)count > KeptPositionsLocked()) return null;
                var first = _kept[0].Output;
                var rowBytes = first.Bytes.Length / (int)first.Shape[1];
                var bytes = new byte[count * rowBytes];
                foreach (var (keptStart, output) in _kept)
                {
                    var positions = (int)output.Shape[1];
                    var from = Math.Max(start, keptStart);
                    var to = Math.Min(start + count, keptStart + positions);
                    if (from < to)
                        output.Bytes.Span.Slice((from - keptStart) * rowBytes, (to - from) * rowBytes).CopyTo(bytes.AsSpan((from - start) * rowBytes));
                }
                return new TensorData(first.Type, [1, count, first.Shape[2]], bytes);
            }
        }

        private int KeptPositionsLocked() => _kept.Count == 0 ? 0 : _kept[^1].Start + (int)_kept[^1].Output.Shape[1];

        /// <summary>Returns every kept output's buffer (the session is closing).</summary>
        public void DropKept()
        {
            lock (_kept)
            {
                foreach (var (_, output) in _kept) output.Dispose();
                _kept.Clear();
            }
        }

        /// <summary>Cancelled when closing starts: a step still waiting for compute gives up.</summary>
        public CancellationToken Closing => _closing.Token;

        public bool IsClosing => Volatile.Read(ref _closeStarted) != 0;

        /// <summary>Completes when the session's state has been freed.</summary>
        public Task Closed => _closed.Task;

        public bool TryEnqueue(Step step)
        {
            Interlocked.Increment(ref _pending);
            if (Queue.Writer.TryWrite(step)) return true;
            Interlocked.Decrement(ref _pending);
            return false;
        }

        public void StepDone(long timestamp)
        {
            Volatile.Write(ref _lastUsed, timestamp);
            Interlocked.Decrement(ref _pending);
        }

        public bool IsIdle(TimeProvider clock, TimeSpan timeout) =>
            !IsClosing && Volatile.Read(ref _pending) == 0 && clock.GetElapsedTime(Volatile.Read(ref _lastUsed)) > timeout;

        /// <summary>True for the one caller that closes the session: its queue takes no more steps and waiting steps give up.</summary>
        public bool BeginClose()
        {
            if (Interlocked.Exchange(ref _closeStarted, 1) != 0) return false;
            Queue.Writer.TryComplete();
            _closing.Cancel();
            return true;
        }

        public void EndClose()
        {
            _closing.Dispose();
            _closed.SetResult();
        }
    }
}
