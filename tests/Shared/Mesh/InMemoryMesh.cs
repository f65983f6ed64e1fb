using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Node;
using InferenceMesh.Protocol;

namespace InferenceMesh.Tests.Shared;

/// <summary>
/// A mesh of <see cref="StageServer"/>s joined by in-memory pipes, for socket-free tests: it is every node's
/// connector; its node list (dead nodes included, as the DHT keeps them until they expire) is the directory. <see cref="Kill"/> cuts a node off as SIGKILL would: its
/// streams break mid-frame and new connections are refused, while the directory still lists it.
/// </summary>
/// <param name="recordFrames">Whether every node decodes a copy of each frame it reads into <see cref="MeshNode.Received"/>; off for tests that count pooled buffers (the copies are never returned).</param>
public sealed class InMemoryMesh(bool recordFrames = true) : IAsyncDisposable
{
    private readonly List<MeshNode> _nodes = [];
    private readonly List<Link> _links = [];
    private readonly object _gate = new();

    public sealed record MeshNode(string PeerId, ServedSpan Span, StageServer Server, InferenceMesh.P2P.Identity.Ed25519KeyPair Key)
    {
        /// <summary>Every stage frame this node received, each stream's bytes in order (for tests that compare what nodes see).</summary>
        public List<List<StageMessage>> Received { get; } = [];

        public bool Dead { get; set; }

        /// <summary>Completed never: a stalled node's outgoing bytes wait on it.</summary>
        internal TaskCompletionSource? Stall { get; set; }
    }

    private sealed record Link(string From, string To, Pipe Forward, Pipe Backward);

    public IReadOnlyList<MeshNode> Nodes { get { lock (_gate) return _nodes.ToList(); } }

    /// <param name="fault">A lie the node tells (the process must allow faults).</param>
    /// <param name="threads">ONNX Runtime threads per stage run.</param>
    public MeshNode AddNode(string splitDirectory, BlockRange blocks, NodeOptions? options = null, InferenceMesh.Compute.ExecutorKind executor = InferenceMesh.Compute.ExecutorKind.Ort,
        StageFault? fault = null, int threads = 1)
    {
        var key = TestPeers.KeyFor($"peer-{_nodes.Count}-{blocks.Start}-{blocks.End}");
        var peerId = key.PeerId.ToString();
        var span = ServedSpan.Load(splitDirectory, blocks, executor, (options ?? new NodeOptions()).MaxSessions, threads: threads);
        var node = new MeshNode(peerId, span, new StageServer(span, options ?? new NodeOptions(), ConnectorFor(peerId), identity: key, fault: fault), key);
        lock (_gate) _nodes.Add(node);
        return node;
    }

    /// <summary>
    /// The frames <paramref name="node"/> received, all streams together, and its record cleared, so the next call
    /// sees only what came after; safe while frames are still arriving.
    /// </summary>
    public IReadOnlyList<StageMessage> TakeReceived(MeshNode node)
    {
        lock (_gate)
        {
            var frames = node.Received.SelectMany(stream => stream).ToList();
            foreach (var stream in node.Received) stream.Clear();
            return frames;
        }
    }

    /// <summary>The connector a peer uses to open streams to others.</summary>
    public IStageConnector ConnectorFor(string peerId) => new Connector(this, peerId);

    /// <summary>
    /// Makes a node hang as a wedged process would: its connections stay open and it keeps reading, but nothing it
    /// sends (replies, pushes) arrives any more.
    /// </summary>
    public void Stall(string peerId)
    {
        lock (_gate) _nodes.Single(n => n.PeerId == peerId).Stall = new TaskCompletionSource();
    }

    public void Kill(string peerId)
    {
        List<Link> cut;
        lock (_gate)
        {
            _nodes.Single(n => n.PeerId == peerId).Dead = true;
            cut = _links.Where(l => l.From == peerId || l.To == peerId).ToList();
        }
        var killed = new IOException($"{peerId} was killed");
        foreach (var link in cut)
        {
            link.Forward.Writer.Complete(killed);
            link.Forward.Reader.Complete(killed);
            link.Backward.Writer.Complete(killed);
            link.Backward.Reader.Complete(killed);
        }
    }

    /// <summary>A raw byte stream to <paramref name="to"/>'s stage server, for feeding it hostile bytes.</summary>
    public IDuplexPipe ConnectRaw(string from, string to)
    {
        MeshNode target;
        lock (_gate)
        {
            target = _nodes.SingleOrDefault(n => n.PeerId == to) ?? throw new IOException($"no route to {to}");
            if (target.Dead || _nodes.Any(n => n.PeerId == from && n.Dead)) throw new IOException($"connection to {to} refused");
        }
        var forward = new Pipe();
        var backward = new Pipe();
        var serverOutput = new Pipe();
        lock (_gate) _links.Add(new Link(from, to, forward, backward));
        // The server writes through a pump that a stall can hold; the link's own pipes are what Kill breaks.
        _ = PumpAsync(serverOutput.Reader, backward.Writer, target);
        var received = new List<StageMessage>();
        lock (_gate) target.Received.Add(received);
        var serverPipe = new DuplexPipe(forward.Reader, serverOutput.Writer);
        _ = target.Server.ServeAsync(new StageChannel(recordFrames ? new RecordingPipe(serverPipe, received, _gate) : serverPipe));
        var callerOutput = new Pipe();
        var caller = _nodes.SingleOrDefault(n => n.PeerId == from);
        if (caller is null) return new DuplexPipe(backward.Reader, forward.Writer);
        _ = PumpAsync(callerOutput.Reader, forward.Writer, caller);
        return new DuplexPipe(backward.Reader, callerOutput.Writer);
    }

    private static async Task PumpAsync(PipeReader source, PipeWriter target, MeshNode sender)
    {
        try
        {
            while (true)
            {
                var read = await source.ReadAsync();
                if (sender.Stall is { } stall) await stall.Task;
                foreach (var segment in read.Buffer) await target.WriteAsync(segment);
                source.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted) break;
            }
            await target.CompleteAsync();
        }
        catch (Exception e)
        {
            await target.CompleteAsync(e);
            await source.CompleteAsync(e);
        }
    }

    private StageChannel Connect(string from, string to) => new(ConnectRaw(from, to));

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.Server.DisposeAsync();
            node.Span.Dispose();
            node.Key.Dispose();
        }
    }

    /// <summary>Decodes a copy of every frame the server reads, as it reads them.</summary>
    private sealed class RecordingPipe(IDuplexPipe inner, List<StageMessage> received, object gate) : IDuplexPipe
    {
        public PipeReader Input { get; } = new RecordingReader(inner.Input, received, gate);
        public PipeWriter Output => inner.Output;
    }

    private sealed class RecordingReader(PipeReader inner, List<StageMessage> received, object gate) : PipeReader
    {
        private System.Buffers.ReadOnlySequence<byte> _last;

        public override async ValueTask<ReadResult> ReadAsync(CancellationToken cancellationToken = default)
        {
            var result = await inner.ReadAsync(cancellationToken);
            _last = result.Buffer;
            return result;
        }

        public override bool TryRead(out ReadResult result)
        {
            var read = inner.TryRead(out result);
            if (read) _last = result.Buffer;
            return read;
        }

        public override void AdvanceTo(SequencePosition consumed) => AdvanceTo(consumed, consumed);

        public override void AdvanceTo(SequencePosition consumed, SequencePosition examined)
        {
            // The channel consumes whole frames only, so what it consumed decodes exactly.
            var frames = _last.Slice(0, consumed);
            while (StageCodec.TryRead(ref frames, new StageLimits(), out var message))
                lock (gate) received.Add(message!);
            inner.AdvanceTo(consumed, examined);
        }

        public override void CancelPendingRead() => inner.CancelPendingRead();
        public override void Complete(Exception? exception = null) => inner.Complete(exception);
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }

    private sealed class Connector(InMemoryMesh mesh, string self) : IStageConnector
    {
        public ValueTask<StageChannel> ConnectAsync(string peerId, IReadOnlyList<string> addresses, CancellationToken cancellation) =>
            ValueTask.FromResult(mesh.Connect(self, peerId));
    }
}
