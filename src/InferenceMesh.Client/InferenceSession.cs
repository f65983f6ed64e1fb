using System.Threading.Channels;
using InferenceMesh.Core;
using InferenceMesh.P2P.Dht;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>
/// One generation through the mesh: a KV-cache session on every server of the route. The client keeps the
/// input of every hop for every position, so when a server dies or stalls it bans it, re-plans only that
/// hop's blocks, replays the kept inputs to the replacement to rebuild its cache, and goes on.
/// </summary>
/// <remarks>
/// One reader loop per hop turns the hop's stream into events on one bounded channel; only the stepping code
/// reads that channel, so every piece of per-step state is touched by one flow at a time. Not thread-safe:
/// one step at a time.
/// </remarks>
public sealed partial class InferenceSession : IAsyncDisposable
{
    /// <summary>Events queued from the hops' streams before their readers wait (backpressure onto the streams).</summary>
    private const int EventCapacity = 64;

    private readonly MeshClient _client;
    private readonly int _maxLength;
    private readonly List<Hop> _hops = [];
    private readonly Dictionary<int, List<TensorData>> _inputsByBlock = [];
    // With ServersKeepOutputs, the inputs of a block that the server before keeps: positions after the held ones in _inputsByBlock.
    private readonly Dictionary<int, KeptInputs> _keptInputs = [];
    // Every tensor kept for replays and checks (several lists may share one): their pooled buffers go back when the session ends.
    private readonly HashSet<TensorData> _held = new(ReferenceEqualityComparer.Instance);
    private readonly Channel<HopEvent> _events = Channel.CreateBounded<HopEvent>(new BoundedChannelOptions(EventCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly CancellationTokenSource _closing = new();
    private readonly List<Task> _readers = [];
    private ulong _nextRequestId;
    private int _hopsOpened;
    private string _lastFailure = "";
    private StepState? _running;
    private bool _disposed;

    internal InferenceSession(MeshClient client, string id, int maxLength, VerificationTally tally, Random checkRandom)
    {
        _client = client;
        Id = id;
        _maxLength = maxLength;
        _tally = tally;
        _checkRandom = checkRandom;
    }

    public string Id { get; }

    /// <summary>How this session's steps travel (<see cref="MeshClientOptions.Mode"/>).</summary>
    public RouteMode Mode => _client.Options.Mode;

    /// <summary>Positions whose KV caches every server of the route holds.</summary>
    public int Positions { get; private set; }

    /// <summary>Servers replaced so far.</summary>
    public int Recoveries { get; private set; }

    /// <summary>
    /// Bytes of activations this session has received in step results (payloads only, framing and commitments not counted):
    /// every hop's output of every step, stale ones, recovery replays and checks' validator replays included.
    /// </summary>
    public long ActivationBytesReceived { get; private set; }

    /// <summary>What verification has done in this session so far: commitments checked, replays and their deviations, bans.</summary>
    public VerificationReport Verification => _tally.Report();

    /// <summary>The route now: each hop's server, blocks, steps and mean latency.</summary>
    public IReadOnlyList<HopReport> Route => _hops.Select(h => h.Report()).ToList();

    private int BlockCount => _client.Manifest.BlockCount;
    private TimeProvider Time => _client.Options.Time;

    /// <summary>Whether the route's servers keep the outputs they push on (<see cref="MeshClientOptions.ServersKeepOutputs"/>, chained routes only).</summary>
    private bool ServersKeep => _client.Options.ServersKeepOutputs && Mode == RouteMode.Chained;

    internal async Task OpenAsync(CancellationToken cancellation) =>
        _hops.AddRange(await OpenRouteAsync(new BlockRange(0, BlockCount), cancellation).ConfigureAwait(false));

    /// <summary>Runs <paramref name="tokens"/> at positions from <paramref name="start"/> and returns the last position's logits. Not safe to cancel mid-step: the session must then be disposed.</summary>
    /// <exception cref="MeshException"><see cref="MeshErrorCode.ShapeMismatch"/> for a step that does not start at <see cref="Positions"/>,
    /// or of more tokens than the model takes per step (<see cref="Manifest.MaxStepPositions"/>).</exception>
    public async ValueTask<float[]> StepAsync(int[] tokens, int start, CancellationToken cancellation = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (start != Positions)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"session {Id} holds {Positions} positions; a step at {start} does not follow on");
        if (tokens.Length > _client.Manifest.MaxStepPositions)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"a step of {tokens.Length} tokens; this model takes at most {_client.Manifest.MaxStepPositions} per step (its export declares its token input so)");
        var ids = new long[tokens.Length];
        for (var i = 0; i < ids.Length; i++) ids[i] = tokens[i];
        var embedded = _client.Head.Run(Id, TensorData.FromInt64s([1, ids.Length], ids), start);

        var state = _running = new StepState(++_nextRequestId, embedded, Time.GetTimestamp());
        var from = 0;
        var chained = Mode == RouteMode.Chained;
        while (true)
        {
            var failed = chained && from == 0
                ? await RunChainedAsync(state, start, cancellation).ConfigureAwait(false)
                : await RunRelayedAsync(state, from, start, cancellation).ConfigureAwait(false);
            if (failed is null) break;
            if (++Recoveries > _client.Options.MaxRecoveries)
                throw new MeshException(MeshErrorCode.RouteUnavailable, $"session {Id} gave up after {_client.Options.MaxRecoveries} server replacements");
            from = await RecoverAsync(failed.Value, cancellation).ConfigureAwait(false);
            chained = false;
        }
        _running = null;

        for (var i = 0; i < _hops.Count; i++)
        {
            var hop = _hops[i];
            var input = state.InputAt(hop.Blocks.Start);
            // Once the server before keeps a block's inputs, it keeps them all: a copy that came here (a step relayed after a
            // recovery) is not kept twice.
            if (i > 0 && ServersKeep && (input is null || _keptInputs.ContainsKey(hop.Blocks.Start)))
                KeptBy(_hops[i - 1], hop.Blocks.Start, start, tokens.Length);
            else
            {
                Hold(input!);
                InputsAt(hop.Blocks.Start).Add(input!);
            }
            hop.Record(state.Latency(hop.Blocks, Time));
        }
        if (Verifying) VerifyCommitments(state, start, tokens.Length);
        Positions = start + tokens.Length;
        if (Verifying) await CheckWindowAsync(final: false, cancellation).ConfigureAwait(false);
        using var logits = _client.Tail.Run(Id, state.Outputs[BlockCount], start);
        // Outputs not kept (the last hop's when no check needs it, those of hops replaced during the step) are done with.
        foreach (var output in state.Outputs.Values)
            if (!_held.Contains(output)) output.Dispose();
        return logits.LastRowAsFloats();
    }

    private void Hold(TensorData tensor) => _held.Add(tensor);

    private async Task<int?> RunChainedAsync(StepState state, int start, CancellationToken cancellation)
    {
        // A server cannot push to itself: after a recovery one server may hold two neighbouring hops, and the chain ends there.
        var chainEnd = 1;
        while (chainEnd < _hops.Count && _hops[chainEnd].Server.Peer != _hops[chainEnd - 1].Server.Peer) chainEnd++;
        var chain = _hops.Take(chainEnd).ToList();
        var route = chain.Skip(1).Select(h => new RouteHop(h.Server.Peer.ToString(), h.Server.Addresses.Select(a => a.ToString()).ToList(), h.SessionId)).ToList();
        state.SentAt[0] = Time.GetTimestamp();
        state.Chain = chain;
        if (!await TrySendAsync(_hops[0], new Step(state.Id, _hops[0].SessionId, start, state.Head!, route), cancellation).ConfigureAwait(false)) return Unsendable(0);
        // Every hop reports its output (or, keeping it, a receipt); the step is done when all have, so each hop's input is kept for replay.
        var failed = await WaitAsync(() => chain.All(h => state.Reported(h.Blocks.End)), state, cancellation).ConfigureAwait(false);
        return failed is not null || chainEnd == _hops.Count ? failed : await RunRelayedAsync(state, chainEnd, start, cancellation).ConfigureAwait(false);
    }

    private async Task<int?> RunRelayedAsync(StepState state, int from, int start, CancellationToken cancellation)
    {
        for (var i = from; i < _hops.Count; i++)
        {
            var hop = _hops[i];
            var input = state.InputAt(hop.Blocks.Start);
            if (input is null && i > 0)
            {
                // A chained step's hop before pushes on before it sends the client its copy: that copy may still be on its
                // way when this hop fails or is replaced, so it is awaited unless the hop before fails as well.
                var before = _hops[i - 1];
                var failedBefore = await WaitAsync(() => state.Reported(hop.Blocks.Start) || before.IsBroken || state.FailedHops.Contains(before),
                    state, cancellation, only: before).ConfigureAwait(false);
                if (failedBefore is not null) return failedBefore;
                // A receipt: the hop before keeps this step's output, and sends it now that this hop must be given it from here.
                if (state.InputAt(hop.Blocks.Start) is null && state.Receipts.GetValueOrDefault(hop.Blocks.Start) == before
                    && await RequestOutputAsync(before, new FetchOutputs(state.Id, before.SessionId, start, (int)state.Head!.Shape[1]), state, cancellation).ConfigureAwait(false) is null)
                    return i - 1;
                input = state.InputAt(hop.Blocks.Start);
            }
            if (input is null) return Math.Max(i - 1, 0);
            state.SentAt[hop.Blocks.Start] = Time.GetTimestamp();
            if (!await TrySendAsync(hop, new Step(state.Id, hop.SessionId, start, input, []), cancellation).ConfigureAwait(false)) return Unsendable(i);
            var failed = await WaitAsync(() => state.Outputs.ContainsKey(hop.Blocks.End), state, cancellation).ConfigureAwait(false);
            if (failed is not null) return failed;
        }
        return null;
    }

    /// <summary>
    /// Applies hop events until <paramref name="done"/> holds (null), a hop of the step fails (its index), or the step
    /// timeout passes (the first hop without an output; -1 while no step runs).
    /// </summary>
    /// <param name="only">When set (a replay), failures of other hops are noted on them but do not end the wait.</param>
    private async Task<int?> WaitAsync(Func<bool> done, StepState? state, CancellationToken cancellation, Hop? only = null)
    {
        // One timer for the whole wait, made only when the wait cannot end at once: most events finish a step.
        CancellationTokenSource? timeout = null;
        CancellationTokenSource? linked = null;
        try
        {
            while (!done())
            {
                if (timeout is null)
                {
                    timeout = new CancellationTokenSource(_client.Options.StepTimeout, Time);
                    linked = CancellationTokenSource.CreateLinkedTokenSource(cancellation, timeout.Token);
                }
                HopEvent next;
                try
                {
                    next = await _events.Reader.ReadAsync(linked!.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellation.IsCancellationRequested)
                {
                    return Stalled(state);
                }
                if (Apply(next, state) is { } failed && (only is null || next.Hop == only)) return failed;
            }
        }
        finally
        {
            linked?.Dispose();
            timeout?.Dispose();
        }
        return null;
    }

    /// <summary>A hop whose stream takes no more: the one to replace.</summary>
    private int Unsendable(int index)
    {
        _lastFailure = "its stream takes no more steps";
        return index;
    }

    /// <summary>A stall: the first hop without an output is the one that holds the step.</summary>
    private int Stalled(StepState? state)
    {
        if (state is null) return -1;
        _lastFailure = $"no answer within {_client.Options.StepTimeout.TotalSeconds:F0} s";
        for (var i = 0; i < _hops.Count; i++)
            if (!state.Reported(_hops[i].Blocks.End)) return i;
        return _hops.Count - 1;
    }

    /// <summary>Applies one event; returns the index of a hop of the running step that failed, else null (stale events are dropped).</summary>
    private int? Apply(HopEvent next, StepState? state)
    {
        var hop = next.Hop;
        // A replaced hop's last words (its stream closing, a late error) concern nobody now.
        if (next.Message is StepResult received) ActivationBytesReceived += received.Activation.Bytes.Length;
        if (hop.IsDisposed)
        {
            (next.Message as StepResult)?.Activation.Dispose();
            return null;
        }
        switch (next.Message)
        {
            case SessionOpened when hop.Refusal is null:
                hop.IsOpen = true;
                return null;
            case StageError error when !hop.IsOpen && hop.Refusal is null:
                hop.Refusal = $"{error.Code}: {error.Message}";
                return null;
            case StepResult result when For(result.StepId, state) is { } target:
                // A step re-run after a recovery may bring a span's output again; the first copy is dropped unless kept.
                if (target.Outputs.GetValueOrDefault(result.BlockEnd) is { } earlier && !_held.Contains(earlier) && !ReferenceEquals(earlier, target.Head)) earlier.Dispose();
                target.Outputs[result.BlockEnd] = result.Activation;
                target.Commitments[result.BlockEnd] = result.Commitment;
                target.ArrivedAt[result.BlockEnd] = Time.GetTimestamp();
                return null;
            case StepReceipt receipt when For(receipt.StepId, state) is { } target:
                target.Receipts[receipt.BlockEnd] = hop;
                target.ArrivedAt[receipt.BlockEnd] = Time.GetTimestamp();
                return null;
            case StageError error when state is not null && error.Code == StageErrorCode.NextHopFailed && (error.RequestId == state.Id || error.RequestId == 0):
                _lastFailure = $"the server before it reported {error.Message}";
                return Blamed(NextInChain(hop, state));
            case StageError error when state is not null && (error.RequestId == state.Id || error.RequestId == 0):
                state.FailedHops.Add(hop);
                _lastFailure = $"{error.Code}: {error.Message}";
                return Blamed(hop);
            case null:
                hop.IsBroken = true;
                if (!hop.IsOpen) hop.Refusal ??= "connection closed";
                _lastFailure = next.Ended ?? "its stream ended";
                return state is null ? null : Blamed(hop);
            case StepResult stale:
                // A result of an earlier step (one given up on): nothing waits for it.
                stale.Activation.Dispose();
                return null;
            default:
                return null;
        }
    }

    /// <summary>
    /// The step an answer with id <paramref name="id"/> belongs to: the one waited for, or else the running step, whose outputs and
    /// receipts still on their way are kept while a recovery waits for a replay or a fetch (on the same stream, they come first).
    /// </summary>
    private StepState? For(ulong id, StepState? waitedFor) =>
        waitedFor?.Id == id ? waitedFor : _running?.Id == id ? _running : null;

    /// <summary>The route index of a hop to replace; null when it is no longer on the route (already replaced).</summary>
    private int? Blamed(Hop? hop)
    {
        if (hop is null || hop.IsDisposed) return null;
        var index = _hops.IndexOf(hop);
        return index < 0 ? null : index;
    }

    /// <summary>The hop <paramref name="hop"/> pushed this step to: the next one in the chain the step was sent along, not in today's route (its replacement is not to blame).</summary>
    private Hop? NextInChain(Hop hop, StepState state)
    {
        var chain = state.Chain ?? _hops;
        var position = chain.IndexOf(hop);
        return position >= 0 && position + 1 < chain.Count ? chain[position + 1] : null;
    }

    /// <summary>Replaces hop <paramref name="failedIndex"/> and returns the hop index to resume the step from.</summary>
    private async Task<int> RecoverAsync(int failedIndex, CancellationToken cancellation)
    {
        var failed = _hops[failedIndex];
        if (failedIndex > 0 && !await FetchKeptInputsAsync(failed.Blocks.Start, cancellation).ConfigureAwait(false))
        {
            // The server before, which keeps the inputs to replay, cannot send them: it has failed as well. It is replaced
            // first (its replacement's replay gives this hop's inputs), and this one, left broken, when the step reaches it.
            failed.IsBroken = true;
            if (++Recoveries > _client.Options.MaxRecoveries)
                throw new MeshException(MeshErrorCode.RouteUnavailable, $"session {Id} gave up after {_client.Options.MaxRecoveries} server replacements");
            _lastFailure = "it could not send the outputs it keeps";
            return await RecoverAsync(failedIndex - 1, cancellation).ConfigureAwait(false);
        }
        _client.Routes.Ban(failed.Server.Peer, $"blocks {failed.Blocks} of session {Id}: {_lastFailure}");
        _client.CountRecovery();
        _hops.RemoveAt(failedIndex);
        await failed.DisposeAsync().ConfigureAwait(false);
        var replacements = await OpenRouteAsync(failed.Blocks, cancellation).ConfigureAwait(false);
        _hops.InsertRange(failedIndex, replacements);
        return failedIndex;
    }

    /// <summary>
    /// Plans <paramref name="blocks"/> over servers not banned, opens a session on each and replays the kept
    /// inputs to them; a server that refuses or fails is banned and the range planned again.
    /// </summary>
    private async Task<List<Hop>> OpenRouteAsync(BlockRange blocks, CancellationToken cancellation)
    {
        while (true)
        {
            var plan = await _client.Routes.PlanAsync(blocks, cancellation).ConfigureAwait(false);
            var opened = new List<Hop>();
            try
            {
                foreach (var planned in plan)
                    opened.Add(await OpenHopAsync(planned, cancellation).ConfigureAwait(false));
                await ReplayAsync(opened, blocks, cancellation).ConfigureAwait(false);
                return opened;
            }
            catch (HopFailedException e)
            {
                _client.Routes.Ban(e.Server.Peer, e.Message);
                foreach (var hop in opened) await hop.DisposeAsync().ConfigureAwait(false);
                if (++Recoveries > _client.Options.MaxRecoveries)
                    throw new MeshException(MeshErrorCode.RouteUnavailable, $"session {Id} gave up on blocks {blocks} after {_client.Options.MaxRecoveries} failed servers; last: {e.Message}");
            }
        }
    }

    /// <summary>Sends every kept input of the replaced blocks through the replacements, rebuilding their caches.</summary>
    private async Task ReplayAsync(List<Hop> replacements, BlockRange blocks, CancellationToken cancellation)
    {
        if (Positions == 0) return;
        var steps = ReplaySteps(Concatenate(InputsAt(blocks.Start)));
        foreach (var hop in replacements)
        {
            var results = new List<(TensorData Output, StepCommitment? Commitment)>();
            var complete = await ReplayStepsAsync(hop, steps, results, cancellation).ConfigureAwait(false);
            foreach (var (output, _) in results) Hold(output);
            if (!complete) throw new HopFailedException(hop.Server, "it failed while its cache was rebuilt");
            if (Verifying)
                for (var i = 0; i < steps.Count; i++) hop.Keep(steps[i], results[i].Output, results[i].Commitment);
            steps = results.Select(r => r.Output).ToList();
            // The replaced server kept the next block's inputs, and they went with it: the replacement's replay stands in.
            if (hop.Blocks.End != blocks.End || _keptInputs.Remove(blocks.End)) _inputsByBlock[hop.Blocks.End] = [.. steps];
        }
    }

    /// <summary>
    /// <paramref name="history"/> (positions from 0) as the steps a replay sends: one step, or for a model whose steps carry at
    /// most <see cref="Manifest.MaxStepPositions"/> positions, consecutive pieces of that many. Sent whole, such a model's blocks
    /// would answer with wrong activations, and a check would accuse every honest server.
    /// </summary>
    private List<TensorData> ReplaySteps(TensorData history)
    {
        var limit = _client.Manifest.MaxStepPositions;
        var positions = (int)history.Shape[1];
        if (positions <= limit) return [history];
        var rowBytes = history.Bytes.Length / positions;
        var steps = new List<TensorData>();
        for (var start = 0; start < positions; start += limit)
        {
            var count = Math.Min(limit, positions - start);
            steps.Add(new TensorData(history.Type, [1, count, history.Shape[2]], history.Bytes.Slice(start * rowBytes, count * rowBytes).ToArray()));
        }
        return steps;
    }

    /// <summary>
    /// Sends <paramref name="steps"/> (consecutive positions from 0) to <paramref name="hop"/> one after another, each when the
    /// one before has come back. Every output received, with its commitment, is added to <paramref name="results"/> (the caller
    /// owns them, also when the hop fails part way); false when the hop failed.
    /// </summary>
    private async Task<bool> ReplayStepsAsync(Hop hop, IReadOnlyList<TensorData> steps, List<(TensorData Output, StepCommitment? Commitment)> results, CancellationToken cancellation)
    {
        var start = 0;
        foreach (var input in steps)
        {
            var replay = new StepState(++_nextRequestId, input, Time.GetTimestamp());
            if (await RequestOutputAsync(hop, new Step(replay.Id, hop.SessionId, start, input, []), replay, cancellation).ConfigureAwait(false) is not { } output)
                return false;
            results.Add((output, replay.Commitments.GetValueOrDefault(hop.Blocks.End)));
            start += (int)input.Shape[1];
        }
        return true;
    }

    /// <summary>
    /// Sends <paramref name="request"/> (a step, or a fetch of kept outputs) to <paramref name="hop"/> and waits for the output it
    /// answers with under <paramref name="awaiting"/>'s id; null when the hop failed or refused.
    /// </summary>
    private async Task<TensorData?> RequestOutputAsync(Hop hop, StageMessage request, StepState awaiting, CancellationToken cancellation)
    {
        if (!await TrySendAsync(hop, request, cancellation).ConfigureAwait(false)
            || await WaitAsync(() => awaiting.Outputs.ContainsKey(hop.Blocks.End) || awaiting.FailedHops.Contains(hop) || hop.IsBroken, awaiting, cancellation, only: hop).ConfigureAwait(false) is not null)
            return null;
        return awaiting.Outputs.GetValueOrDefault(hop.Blocks.End);
    }

    /// <summary>Notes that <paramref name="source"/> keeps the inputs of <paramref name="block"/> at positions [<paramref name="start"/>, +<paramref name="positions"/>).</summary>
    private void KeptBy(Hop source, int block, int start, int positions)
    {
        if (!_keptInputs.TryGetValue(block, out var kept))
            _keptInputs[block] = new KeptInputs(source, start, positions);
        else if (kept.Source == source && kept.From + kept.Count == start)
            kept.Count += positions;
        else
            throw new InvalidOperationException($"block {block}'s inputs are kept by {kept.Source.Server.Peer} up to {kept.From + kept.Count}; a step at {start} came from {source.Server.Peer}");
    }

    /// <summary>
    /// Fetches the inputs of <paramref name="block"/> that the server before keeps, so that all are held here (a replay is about
    /// to need them), in pieces that fit a frame; false when that server fails or refuses.
    /// </summary>
    private async Task<bool> FetchKeptInputsAsync(int block, CancellationToken cancellation)
    {
        if (!_keptInputs.TryGetValue(block, out var kept)) return true;
        // Half the stream's frame limit per piece, rows counted as float32 (the server refuses a fetch over its limit).
        var rowBytes = (long)_client.Manifest.Config!.Dim * sizeof(float);
        var perFetch = (int)Math.Max(1, kept.Source.Channel.Limits.MaxFrameBytes / 2 / rowBytes);
        var fetched = new List<TensorData>();
        for (var from = kept.From; from < kept.From + kept.Count; from += perFetch)
        {
            var count = Math.Min(perFetch, kept.From + kept.Count - from);
            var request = new StepState(++_nextRequestId, null, Time.GetTimestamp());
            var output = await RequestOutputAsync(kept.Source, new FetchOutputs(request.Id, kept.Source.SessionId, from, count), request, cancellation).ConfigureAwait(false);
            if (output is not null) fetched.Add(output);
            if (output?.Shape is not [1, var positions, _] || positions != count)
            {
                foreach (var piece in fetched) piece.Dispose();
                return false;
            }
        }
        foreach (var piece in fetched) Hold(piece);
        InputsAt(block).AddRange(fetched);
        _keptInputs.Remove(block);
        return true;
    }

    private List<TensorData> InputsAt(int block)
    {
        if (!_inputsByBlock.TryGetValue(block, out var list)) _inputsByBlock[block] = list = [];
        return list;
    }

    private static TensorData Concatenate(List<TensorData> chunks)
    {
        if (chunks.Count == 1) return chunks[0];
        var width = chunks[0].Shape[2];
        var bytes = new byte[chunks.Sum(c => c.Bytes.Length)];
        var offset = 0;
        foreach (var chunk in chunks)
        {
            chunk.Bytes.Span.CopyTo(bytes.AsSpan(offset));
            offset += chunk.Bytes.Length;
        }
        return new TensorData(chunks[0].Type, [1, chunks.Sum(c => c.Shape[1]), width], bytes);
    }

    private async Task<Hop> OpenHopAsync(PlannedHop planned, CancellationToken cancellation)
    {
        StageChannel channel;
        try
        {
            channel = await _client.Dialer(planned.Server.Peer, planned.Server.Addresses, cancellation).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException or TimeoutException or InvalidOperationException)
        {
            throw new HopFailedException(planned.Server, $"cannot connect: {e.Message}");
        }
        // Each hop has its own session id on its server, so one server may hold two hops of a session (after a recovery).
        var hop = new Hop(planned.Server, planned.Blocks, channel, $"{Id}.{++_hopsOpened}");
        _readers.Add(ReadAsync(hop));
        if (!await TrySendAsync(hop, new OpenSession(++_nextRequestId, hop.SessionId, _client.Manifest.ModelId, planned.Blocks, _maxLength, ServersKeep), cancellation).ConfigureAwait(false)
            || await WaitAsync(() => hop.IsOpen || hop.Refusal is not null, null, cancellation).ConfigureAwait(false) is not null
            || !hop.IsOpen)
        {
            var reason = hop.Refusal ?? "no answer";
            await hop.DisposeAsync().ConfigureAwait(false);
            throw new HopFailedException(planned.Server, $"refused blocks {planned.Blocks}: {reason}");
        }
        return hop;
    }

    /// <summary>Turns the hop's stream into events; a null message says the stream ended.</summary>
    private async Task ReadAsync(Hop hop)
    {
        var why = "its stream closed";
        try
        {
            while (await hop.Channel.ReceiveAsync(_closing.Token).ConfigureAwait(false) is { } message)
                await _events.Writer.WriteAsync(new HopEvent(hop, message, null), _closing.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or ChannelClosedException)
        {
            why = $"its stream failed: {e.Message}";
        }
        try
        {
            await _events.Writer.WriteAsync(new HopEvent(hop, null, why), _closing.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
        }
    }

    private static async Task<bool> TrySendAsync(Hop hop, StageMessage message, CancellationToken cancellation)
    {
        if (hop.IsBroken) return false;
        try
        {
            await hop.Channel.SendAsync(message, cancellation).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is MeshException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Closes the session on every server of the route (one-way), closes the streams and waits for their readers.</summary>
    public async ValueTask DisposeAsync()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var hop in _hops)
        {
            await TrySendAsync(hop, new CloseSession(hop.SessionId), CancellationToken.None).ConfigureAwait(false);
            await hop.DisposeAsync().ConfigureAwait(false);
        }
        await _closing.CancelAsync().ConfigureAwait(false);
        _events.Writer.TryComplete();
        await Task.WhenAll(_readers).ConfigureAwait(false);
        _closing.Dispose();
        while (_events.Reader.TryRead(out var left))
            (left.Message as StepResult)?.Activation.Dispose();
        foreach (var tensor in _held) tensor.Dispose();
        _held.Clear();
        foreach (var hop in _hops) hop.Forget();
        _inputsByBlock.Clear();
        _keptInputs.Clear();
    }

    /// <param name="Message">Null when the stream ended, for the reason <paramref name="Ended"/> gives.</param>
    private readonly record struct HopEvent(Hop Hop, StageMessage? Message, string? Ended);

    private sealed class Hop(ServerInfo server, BlockRange blocks, StageChannel channel, string sessionId) : IAsyncDisposable
    {
        public string SessionId { get; } = sessionId;
        private int _steps;
        private double _totalMs;

        public ServerInfo Server { get; } = server;
        public BlockRange Blocks { get; } = blocks;
        public StageChannel Channel { get; } = channel;
        public bool IsOpen { get; set; }
        public string? Refusal { get; set; }
        public bool IsBroken { get; set; }
        public bool IsDisposed { get; private set; }

        /// <summary>Every input this hop was sent and every output it returned, with its commitments, in position order (what a check replays).</summary>
        public List<TensorData> Inputs { get; } = [];
        public List<TensorData> Outputs { get; } = [];
        public List<StepCommitment?> Commitments { get; } = [];

        /// <summary>Positions a check has confirmed so far.</summary>
        public int CheckedThrough { get; set; }

        public void Keep(TensorData input, TensorData output, StepCommitment? commitment)
        {
            Inputs.Add(input);
            Outputs.Add(output);
            Commitments.Add(commitment);
        }

        /// <summary>Drops the kept history (the session has returned its buffers).</summary>
        public void Forget()
        {
            Inputs.Clear();
            Outputs.Clear();
            Commitments.Clear();
        }

        public void Record(TimeSpan latency)
        {
            _steps++;
            _totalMs += latency.TotalMilliseconds;
        }

        public HopReport Report() => new(Server.Peer.ToString(), Blocks, _steps, _steps == 0 ? 0 : _totalMs / _steps)
        {
            Connection = Channel.IsRelayed switch { true => PeerConnection.Relayed, false => PeerConnection.Direct, null => PeerConnection.Unknown },
        };

        public async ValueTask DisposeAsync()
        {
            if (IsDisposed) return;
            IsDisposed = true;
            IsBroken = true;
            await Channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Inputs of a block that <see cref="Source"/>, the server before it, keeps: positions [<see cref="From"/>, +<see cref="Count"/>).</summary>
    private sealed class KeptInputs(Hop source, int from, int count)
    {
        public Hop Source { get; } = source;
        public int From { get; } = from;
        public int Count { get; set; } = count;
    }

    private sealed class HopFailedException(ServerInfo server, string why) : Exception($"server {server.Peer}: {why}")
    {
        public ServerInfo Server { get; } = server;
    }

    /// <summary>One step's outputs by block end, and when inputs left and outputs arrived (timestamps of the session's clock).</summary>
    /// <param name="head">The step's input at block 0 (a replay's input); null for a fetch of kept outputs.</param>
    private sealed class StepState(ulong id, TensorData? head, long started)
    {
        public ulong Id { get; } = id;
        public TensorData? Head { get; } = head;
        public Dictionary<int, TensorData> Outputs { get; } = [];

        /// <summary>Hops that answered with a receipt, keeping their output, by block end.</summary>
        public Dictionary<int, Hop> Receipts { get; } = [];
        public Dictionary<int, StepCommitment?> Commitments { get; } = [];
        public Dictionary<int, long> SentAt { get; } = [];
        public Dictionary<int, long> ArrivedAt { get; } = [];
        public HashSet<Hop> FailedHops { get; } = [];

        /// <summary>For a chained step, the hops in the order it was sent along.</summary>
        public List<Hop>? Chain { get; set; }

        public TensorData? InputAt(int block) => block == 0 ? Head : Outputs.GetValueOrDefault(block);

        /// <summary>Whether the hop ending at <paramref name="blockEnd"/> has answered this step, with its output or a receipt.</summary>
        public bool Reported(int blockEnd) => Outputs.ContainsKey(blockEnd) || Receipts.ContainsKey(blockEnd);

        /// <summary>
        /// From the hop's input leaving here to its output arriving; chained, from the last thing this client saw of the
        /// step before that output (the step leaving, or an earlier hop's copy arriving). A chained server sends the client
        /// its copy only after pushing the step on, so the next hop's output may arrive first: counting from the hop
        /// before's copy would then give a negative time.
        /// </summary>
        public TimeSpan Latency(BlockRange blocks, TimeProvider time)
        {
            if (!ArrivedAt.TryGetValue(blocks.End, out var arrived)) return TimeSpan.Zero;
            if (SentAt.TryGetValue(blocks.Start, out var sent)) return time.GetElapsedTime(sent, arrived);
            var earlierArrivals = ArrivedAt.Where(a => a.Key <= blocks.Start).Select(a => a.Value);
            var from = SentAt.Values.Concat(earlierArrivals).Where(t => t <= arrived).Append(started).Max();
            return time.GetElapsedTime(from, arrived);
        }
    }
}
