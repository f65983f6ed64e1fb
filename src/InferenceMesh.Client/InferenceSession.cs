using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using InferenceMesh.Core;
using InferenceMesh.Protocol;

namespace InferenceMesh.Client;

/// <summary>
/// One generation through the mesh: a KV-cache session on every server of the route. The client keeps the
/// input of every hop for every position, so when a server dies or stalls it bans it, re-plans only that
/// hop's blocks, replays the kept inputs to the replacement to rebuild its cache, and goes on.
/// </summary>
public sealed class InferenceSession : IAsyncDisposable
{
    private readonly MeshClient client;
    private readonly RouteMode mode;
    private readonly int maxLength;
    private readonly List<Hop> hops = [];
    private readonly Dictionary<int, List<TensorData>> inputsByBlock = [];
    private readonly CancellationTokenSource closing = new();
    private ulong nextRequestId;
    private StepState? current;

    internal InferenceSession(MeshClient client, string id, int maxLength, RouteMode mode)
    {
        this.client = client;
        Id = id;
        this.maxLength = maxLength;
        this.mode = mode;
    }

    public string Id { get; }

    /// <summary>Positions whose KV caches every server of the route holds.</summary>
    public int Positions { get; private set; }

    /// <summary>Servers replaced so far.</summary>
    public int Recoveries { get; private set; }

    public IReadOnlyList<PlannedHop> Route => hops.Select(h => new PlannedHop(h.Server, h.Blocks)).ToList();

    private int BlockCount => client.Manifest.BlockCount;

    internal async Task OpenAsync(CancellationToken cancellation) =>
        hops.AddRange(await OpenRouteAsync(new BlockRange(0, BlockCount), cancellation).ConfigureAwait(false));

    /// <summary>Runs <paramref name="tokens"/> at positions from <paramref name="start"/> and returns the last position's logits. Not safe to cancel mid-step: the session must then be disposed.</summary>
    public async ValueTask<float[]> StepAsync(int[] tokens, int start, CancellationToken cancellation = default)
    {
        if (start != Positions)
            throw new MeshException(MeshErrorCode.ShapeMismatch, $"session {Id} holds {Positions} positions; a step at {start} does not follow on");
        var ids = new long[tokens.Length];
        for (var i = 0; i < ids.Length; i++) ids[i] = tokens[i];
        var embedded = client.Head.Run(Id, TensorData.FromInt64s([1, ids.Length], ids), start);

        var state = new StepState(++nextRequestId, embedded);
        current = state;
        var from = 0;
        var chained = mode == RouteMode.Chained;
        while (true)
        {
            var failed = chained && from == 0
                ? await RunChainedAsync(state, start, cancellation).ConfigureAwait(false)
                : await RunRelayedAsync(state, from, start, cancellation).ConfigureAwait(false);
            if (failed is null) break;
            if (++Recoveries > client.Options.MaxRecoveries)
                throw new MeshException(MeshErrorCode.RouteUnavailable, $"session {Id} gave up after {client.Options.MaxRecoveries} server replacements");
            from = await RecoverAsync(state, failed.Value, cancellation).ConfigureAwait(false);
            chained = false;
            current = state;
        }

        foreach (var hop in hops) InputsAt(hop.Blocks.Start).Add(state.InputAt(hop.Blocks.Start)!);
        Positions = start + tokens.Length;
        var logits = client.Tail.Run(Id, state.Outputs[BlockCount], start);
        var vocab = (int)logits.Shape[^1];
        return MemoryMarshal.Cast<byte, float>(logits.Bytes)[^vocab..].ToArray();
    }

    private async Task<int?> RunChainedAsync(StepState state, int start, CancellationToken cancellation)
    {
        var route = hops.Skip(1).Select(h => new RouteHop(h.Server.PeerId, h.Server.Addresses, Id)).ToList();
        if (!await TrySendAsync(hops[0], new Step(state.Id, Id, start, state.Head, route), cancellation).ConfigureAwait(false)) return 0;
        // Every hop reports its output; the step is done when all have, so each hop's input is kept for replay.
        return await WaitAsync(state, () => hops.All(h => state.Outputs.ContainsKey(h.Blocks.End)), cancellation).ConfigureAwait(false);
    }

    private async Task<int?> RunRelayedAsync(StepState state, int from, int start, CancellationToken cancellation)
    {
        for (var i = from; i < hops.Count; i++)
        {
            var hop = hops[i];
            var input = state.InputAt(hop.Blocks.Start);
            if (input is null) return Math.Max(i - 1, 0);
            if (!await TrySendAsync(hop, new Step(state.Id, Id, start, input, []), cancellation).ConfigureAwait(false)) return i;
            var failed = await WaitAsync(state, () => state.Outputs.ContainsKey(hop.Blocks.End), cancellation).ConfigureAwait(false);
            if (failed is not null) return failed;
        }
        return null;
    }

    /// <summary>Waits for <paramref name="done"/>; returns null when it holds, else the index of the hop to replace.</summary>
    private async Task<int?> WaitAsync(StepState state, Func<bool> done, CancellationToken cancellation)
    {
        var deadline = DateTime.UtcNow + client.Options.EffectiveStepTimeout;
        while (true)
        {
            if (done()) return null;
            if (state.Failures.TryDequeue(out var failure))
            {
                var index = hops.IndexOf(failure.Hop);
                if (index < 0) continue;
                if (failure.NextHop) index++;
                if (index < hops.Count) return index;
                continue;
            }
            var remaining = deadline - DateTime.UtcNow;
            if (remaining <= TimeSpan.Zero || !await state.Signal.WaitAsync(remaining, cancellation).ConfigureAwait(false))
            {
                // A stall: the first hop without an output is the one that holds the step.
                for (var i = 0; i < hops.Count; i++)
                    if (!state.Outputs.ContainsKey(hops[i].Blocks.End)) return i;
                return null;
            }
        }
    }

    /// <summary>Replaces hop <paramref name="failedIndex"/> and returns the hop index to resume the step from.</summary>
    private async Task<int> RecoverAsync(StepState state, int failedIndex, CancellationToken cancellation)
    {
        var failed = hops[failedIndex];
        client.Ban(failed.Server.PeerId);
        client.CountRecovery();
        await failed.DisposeAsync().ConfigureAwait(false);
        try
        {
            var replacements = await OpenRouteAsync(failed.Blocks, cancellation).ConfigureAwait(false);
            hops.RemoveAt(failedIndex);
            hops.InsertRange(failedIndex, replacements);
            return failedIndex;
        }
        finally
        {
            current = state;
        }
    }

    /// <summary>
    /// Plans <paramref name="blocks"/> over servers not banned, opens a session on each and replays the kept
    /// inputs to them; a server that refuses or fails is banned and the range planned again.
    /// </summary>
    private async Task<List<Hop>> OpenRouteAsync(BlockRange blocks, CancellationToken cancellation)
    {
        while (true)
        {
            var servers = await client.Directory.ListAsync(client.Manifest.ModelId, cancellation).ConfigureAwait(false);
            var plan = RoutePlanner.Plan(servers, blocks, client.IsBanned);
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
                client.Ban(e.Server.PeerId);
                foreach (var hop in opened) await hop.DisposeAsync().ConfigureAwait(false);
                if (++Recoveries > client.Options.MaxRecoveries)
                    throw new MeshException(MeshErrorCode.RouteUnavailable, $"session {Id} gave up on blocks {blocks} after {client.Options.MaxRecoveries} failed servers; last: {e.Message}");
            }
        }
    }

    /// <summary>Sends every kept input of the replaced blocks through the replacements, rebuilding their caches.</summary>
    private async Task ReplayAsync(List<Hop> replacements, BlockRange blocks, CancellationToken cancellation)
    {
        if (Positions == 0) return;
        var input = Concatenate(InputsAt(blocks.Start));
        foreach (var hop in replacements)
        {
            var replay = new StepState(++nextRequestId, input);
            current = replay;
            if (!await TrySendAsync(hop, new Step(replay.Id, Id, 0, input, []), cancellation).ConfigureAwait(false)
                || await WaitAsync(replay, () => replay.Outputs.ContainsKey(hop.Blocks.End), cancellation).ConfigureAwait(false) is not null)
                throw new HopFailedException(hop.Server, "it failed while its cache was rebuilt");
            input = replay.Outputs[hop.Blocks.End];
            if (hop.Blocks.End != blocks.End) inputsByBlock[hop.Blocks.End] = [input];
        }
    }

    private List<TensorData> InputsAt(int block)
    {
        if (!inputsByBlock.TryGetValue(block, out var list)) inputsByBlock[block] = list = [];
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
            chunk.Bytes.CopyTo(bytes, offset);
            offset += chunk.Bytes.Length;
        }
        return new TensorData(DType.Float32, [1, chunks.Sum(c => c.Shape[1]), width], bytes);
    }

    private async Task<Hop> OpenHopAsync(PlannedHop planned, CancellationToken cancellation)
    {
        StageChannel channel;
        try
        {
            channel = await client.Connector.ConnectAsync(planned.Server.PeerId, planned.Server.Addresses, cancellation).ConfigureAwait(false);
        }
        catch (Exception e) when (e is MeshException or IOException or TimeoutException or InvalidOperationException)
        {
            throw new HopFailedException(planned.Server, $"cannot connect: {e.Message}");
        }
        var hop = new Hop(planned.Server, planned.Blocks, channel);
        hop.Reader = ReadAsync(hop);
        var request = ++nextRequestId;
        if (!await TrySendAsync(hop, new OpenSession(request, Id, client.Manifest.ModelId, planned.Blocks, maxLength), cancellation).ConfigureAwait(false)
            || await Task.WhenAny(hop.Opened.Task, Task.Delay(client.Options.EffectiveStepTimeout, cancellation)).ConfigureAwait(false) != hop.Opened.Task
            || hop.Opened.Task.Result is { } refusal)
        {
            var reason = hop.Opened.Task.IsCompleted ? hop.Opened.Task.Result : "no answer";
            await hop.DisposeAsync().ConfigureAwait(false);
            throw new HopFailedException(planned.Server, $"refused blocks {planned.Blocks}: {reason}");
        }
        return hop;
    }

    private async Task ReadAsync(Hop hop)
    {
        try
        {
            while (await hop.Channel.ReceiveAsync(closing.Token).ConfigureAwait(false) is { } message)
            {
                var state = current;
                switch (message)
                {
                    case SessionOpened:
                        hop.Opened.TrySetResult(null);
                        break;
                    case StepResult result when state is not null && result.StepId == state.Id:
                        state.Outputs[result.BlockEnd] = result.Activation;
                        state.Signal.Release();
                        break;
                    case StageError error when !hop.Opened.Task.IsCompleted:
                        hop.Opened.TrySetResult($"{error.Code}: {error.Message}");
                        break;
                    case StageError error when state is not null && (error.RequestId == state.Id || error.RequestId == 0):
                        state.Failures.Enqueue(new HopFailure(hop, error.Code == StageErrorCode.NextHopFailed));
                        state.Signal.Release();
                        break;
                }
            }
        }
        catch (Exception e) when (e is MeshException or IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
        }
        finally
        {
            hop.Opened.TrySetResult("connection closed");
            if (!hop.Disposed && current is { } state)
            {
                state.Failures.Enqueue(new HopFailure(hop, false));
                state.Signal.Release();
            }
        }
    }

    private static async Task<bool> TrySendAsync(Hop hop, StageMessage message, CancellationToken cancellation)
    {
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

    public async ValueTask DisposeAsync()
    {
        foreach (var hop in hops)
        {
            await TrySendAsync(hop, new CloseSession(Id), CancellationToken.None).ConfigureAwait(false);
            await hop.DisposeAsync().ConfigureAwait(false);
        }
        closing.Cancel();
        closing.Dispose();
    }

    private sealed class Hop(ServerSpan server, BlockRange blocks, StageChannel channel) : IAsyncDisposable
    {
        public ServerSpan Server { get; } = server;
        public BlockRange Blocks { get; } = blocks;
        public StageChannel Channel { get; } = channel;
        public Task? Reader { get; set; }
        public TaskCompletionSource<string?> Opened { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public bool Disposed { get; private set; }

        public async ValueTask DisposeAsync()
        {
            if (Disposed) return;
            Disposed = true;
            await Channel.DisposeAsync().ConfigureAwait(false);
        }
    }

    private readonly record struct HopFailure(Hop Hop, bool NextHop);

    private sealed class HopFailedException(ServerSpan server, string why) : Exception($"server {server.PeerId}: {why}")
    {
        public ServerSpan Server { get; } = server;
    }

    private sealed class StepState(ulong id, TensorData head)
    {
        public ulong Id { get; } = id;
        public TensorData Head { get; } = head;
        public ConcurrentDictionary<int, TensorData> Outputs { get; } = new();
        public ConcurrentQueue<HopFailure> Failures { get; } = new();
        public SemaphoreSlim Signal { get; } = new(0);

        public TensorData? InputAt(int block) => block == 0 ? Head : Outputs.GetValueOrDefault(block);
    }
}
