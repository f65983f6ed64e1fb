using System.Collections.Concurrent;
using System.Threading.Channels;
using InferenceMesh.Compute;
using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Node;

/// <summary>
/// Serves the stage protocol for one node: opens sessions under a KV-cache byte budget, runs steps through
/// the served stages in order per session (sessions in parallel), replies to the client or pushes to the
/// next server of a chained route, and turns every bad request into a typed <see cref="StageError"/>
/// without disturbing other sessions.
/// </summary>
public sealed class StageServer : IAsyncDisposable
{
    private readonly ServedSpan span;
    private readonly NodeOptions options;
    private readonly IStageConnector connector;
    private readonly Action<string> log;
    private readonly ConcurrentDictionary<string, ServerSession> sessions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lazy<Task<StageChannel>>> nextHops = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim compute;
    private readonly CancellationTokenSource stopping = new();
    private readonly Task expiry;
    private readonly object budgetLock = new();
    private long reservedBytes;

    public StageServer(ServedSpan span, NodeOptions options, IStageConnector connector, Action<string>? log = null)
    {
        this.span = span;
        this.options = options;
        this.connector = connector;
        this.log = log ?? (_ => { });
        compute = new SemaphoreSlim(options.MaxConcurrentSteps, options.MaxConcurrentSteps);
        expiry = ExpireIdleSessionsAsync(stopping.Token);
    }

    public BlockRange Blocks => span.Blocks;
    public int SessionCount => sessions.Count;
    public long ReservedKvBytes => Interlocked.Read(ref reservedBytes);
    public long FreeKvBytes => options.KvBudgetBytes - ReservedKvBytes;

    /// <summary>
    /// Serves one inbound stage stream until the peer closes it or sends something malformed (that closes only
    /// this stream). Owns the channel: it and the sessions opened on it are closed when serving ends. Safe to cancel.
    /// </summary>
    public async Task ServeAsync(StageChannel channel, CancellationToken cancellation = default)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, stopping.Token);
        var owned = new List<string>();
        try
        {
            while (await channel.ReceiveAsync(linked.Token).ConfigureAwait(false) is { } message)
            {
                switch (message)
                {
                    case OpenSession open:
                        await OpenAsync(channel, open, owned).ConfigureAwait(false);
                        break;
                    case Step step:
                        await EnqueueAsync(channel, step.StepId, step.SessionId, new Work(step.StepId, step.StartPosition, step.Activation, step.Route)).ConfigureAwait(false);
                        break;
                    case CloseSession close:
                        Close(close.SessionId);
                        break;
                    default:
                        await SendQuietlyAsync(channel, new StageError(0, "", StageErrorCode.Malformed, $"a server does not accept '{message.Kind}' messages")).ConfigureAwait(false);
                        break;
                }
            }
        }
        catch (MeshException e)
        {
            log($"stage stream closed: {e.Message}");
            await SendQuietlyAsync(channel, new StageError(0, "", StageErrorCode.Malformed, e.Message)).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (linked.IsCancellationRequested)
        {
        }
        catch (Exception e) when (e is IOException or ObjectDisposedException or InvalidOperationException)
        {
            log($"stage stream failed: {e.Message}");
        }
        finally
        {
            foreach (var id in owned) Close(id);
            await channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    private async Task OpenAsync(StageChannel channel, OpenSession open, List<string> owned)
    {
        string? refusal = null;
        var code = StageErrorCode.LimitExceeded;
        var stages = span.StagesFor(open.Blocks);
        var maxSequence = span.Manifest.Config?.MaxSequence ?? int.MaxValue;
        long reservation = 0;
        if (open.ModelId != span.Manifest.ModelId)
            (refusal, code) = ($"this node serves model {span.Manifest.ModelId}, not {open.ModelId}", StageErrorCode.UnknownModel);
        else if (stages is null)
            (refusal, code) = ($"this node serves blocks {span.Blocks} in stages {string.Join(' ', span.Stages.Select(s => s.Stage.Blocks))}; {open.Blocks} is not a run of them", StageErrorCode.BlocksNotServed);
        else if (open.MaxLength < 1 || open.MaxLength > maxSequence)
            (refusal, code) = ($"max length {open.MaxLength} is outside 1..{maxSequence}", StageErrorCode.ContextOverflow);
        else if (sessions.ContainsKey(open.SessionId))
            (refusal, code) = ($"session {open.SessionId} is already open", StageErrorCode.Malformed);
        else
        {
            reservation = span.KvBytesPerPosition(open.Blocks) * open.MaxLength;
            lock (budgetLock)
            {
                if (sessions.Count >= options.MaxSessions)
                    refusal = $"this node already holds {options.MaxSessions} sessions";
                else if (reservedBytes + reservation > options.KvBudgetBytes)
                    refusal = $"KV cache budget full: session needs {reservation} bytes, {options.KvBudgetBytes - reservedBytes} of {options.KvBudgetBytes} free";
                else
                {
                    reservedBytes += reservation;
                    var session = new ServerSession(open.SessionId, open.Blocks, stages!, reservation, channel, options.MaxQueuedStepsPerSession);
                    sessions[open.SessionId] = session;
                    session.Worker = RunSessionAsync(session);
                }
            }
        }
        if (refusal is not null)
        {
            await SendQuietlyAsync(channel, new StageError(open.RequestId, open.SessionId, code, refusal)).ConfigureAwait(false);
            return;
        }
        owned.Add(open.SessionId);
        await SendQuietlyAsync(channel, new SessionOpened(open.RequestId, open.SessionId)).ConfigureAwait(false);
    }

    private async Task EnqueueAsync(StageChannel channel, ulong stepId, string sessionId, Work work)
    {
        if (!sessions.TryGetValue(sessionId, out var session))
        {
            await SendQuietlyAsync(channel, new StageError(stepId, sessionId, StageErrorCode.UnknownSession, $"no session {sessionId} on this node")).ConfigureAwait(false);
            return;
        }
        if (!session.Queue.Writer.TryWrite(work))
            await SendQuietlyAsync(channel, new StageError(stepId, sessionId, StageErrorCode.Overloaded, $"session {sessionId} already has {options.MaxQueuedStepsPerSession} steps queued")).ConfigureAwait(false);
    }

    private async Task RunSessionAsync(ServerSession session)
    {
        await foreach (var work in session.Queue.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            session.LastUsed = DateTime.UtcNow;
            TensorData output;
            await compute.WaitAsync().ConfigureAwait(false);
            try
            {
                output = work.Activation;
                foreach (var stage in session.Stages)
                    output = stage.Run(session.Id, output, work.StartPosition);
            }
            catch (MeshException e)
            {
                await SendQuietlyAsync(session.Owner, new StageError(work.StepId, session.Id, ErrorCode(e.Code), e.Message)).ConfigureAwait(false);
                continue;
            }
            finally
            {
                compute.Release();
            }
            // The client keeps every span's output as the next span's replay input, even when the step goes on.
            // It is sent before the push so that, on the client's stream, it always precedes a NextHopFailed
            // error about this step: recovery then finds the failed hop's input and blames the right server.
            await SendQuietlyAsync(session.Owner, new StepResult(work.StepId, session.Id, session.Blocks.End, output)).ConfigureAwait(false);
            if (work.Route.Count > 0) await PushAsync(session, work, output).ConfigureAwait(false);
        }
    }

    private async Task PushAsync(ServerSession session, Work work, TensorData output)
    {
        var hop = work.Route[0];
        try
        {
            var next = await nextHops.GetOrAdd(hop.PeerId, peer => new Lazy<Task<StageChannel>>(() => ConnectNextHopAsync(peer, hop.Addresses))).Value.ConfigureAwait(false);
            await next.SendAsync(new Step(work.StepId, hop.SessionId, work.StartPosition, output, work.Route.Skip(1).ToList())).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            nextHops.TryRemove(hop.PeerId, out _);
            await SendQuietlyAsync(session.Owner, new StageError(work.StepId, session.Id, StageErrorCode.NextHopFailed, $"next hop {hop.PeerId} failed: {e.Message}")).ConfigureAwait(false);
        }
    }

    private async Task<StageChannel> ConnectNextHopAsync(string peer, IReadOnlyList<string> addresses)
    {
        var channel = await connector.ConnectAsync(peer, addresses, stopping.Token).ConfigureAwait(false);
        _ = RelayNextHopErrorsAsync(peer, channel);
        return channel;
    }

    /// <summary>The next hop reports errors about our pushes on our stream to it; they belong to the session's client.</summary>
    private async Task RelayNextHopErrorsAsync(string peer, StageChannel channel)
    {
        try
        {
            while (await channel.ReceiveAsync(stopping.Token).ConfigureAwait(false) is { } message)
            {
                if (message is StageError error && sessions.TryGetValue(error.SessionId, out var session))
                    await SendQuietlyAsync(session.Owner, error with { Code = StageErrorCode.NextHopFailed, Message = $"next hop {peer}: {error.Message}" }).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is MeshException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            nextHops.TryRemove(peer, out _);
        }
    }

    /// <summary>Closes a session and frees its KV cache; unknown ids are ignored.</summary>
    public void Close(string sessionId)
    {
        if (!sessions.TryRemove(sessionId, out var session)) return;
        session.Queue.Writer.TryComplete();
        foreach (var stage in session.Stages) stage.CloseSession(sessionId);
        lock (budgetLock) reservedBytes -= session.Reservation;
    }

    private async Task ExpireIdleSessionsAsync(CancellationToken cancellation)
    {
        var period = TimeSpan.FromMilliseconds(Math.Clamp(options.SessionIdleTimeout.TotalMilliseconds / 4, 50, 10_000));
        using var timer = new PeriodicTimer(period);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellation).ConfigureAwait(false))
                foreach (var session in sessions.Values)
                    if (DateTime.UtcNow - session.LastUsed > options.SessionIdleTimeout && session.Queue.Reader.Count == 0)
                    {
                        log($"session {session.Id} idle for {options.SessionIdleTimeout}: closed");
                        Close(session.Id);
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
            log($"could not send {message.Kind}: {e.Message}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        stopping.Cancel();
        foreach (var id in sessions.Keys) Close(id);
        await expiry.ConfigureAwait(false);
        foreach (var hop in nextHops.Values)
            if (hop.IsValueCreated && hop.Value.IsCompletedSuccessfully) await hop.Value.Result.DisposeAsync().ConfigureAwait(false);
        compute.Dispose();
        stopping.Dispose();
    }

    private sealed record Work(ulong StepId, int StartPosition, TensorData Activation, IReadOnlyList<RouteHop> Route);

    private sealed class ServerSession(string id, BlockRange blocks, IReadOnlyList<IStageExecutor> stages, long reservation, StageChannel owner, int queueCapacity)
    {
        public string Id { get; } = id;
        public BlockRange Blocks { get; } = blocks;
        public IReadOnlyList<IStageExecutor> Stages { get; } = stages;
        public long Reservation { get; } = reservation;
        public StageChannel Owner { get; } = owner;
        public Channel<Work> Queue { get; } = Channel.CreateBounded<Work>(new BoundedChannelOptions(queueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        public DateTime LastUsed { get; set; } = DateTime.UtcNow;
        public Task? Worker { get; set; }
    }
}
