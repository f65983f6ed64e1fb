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
public sealed class InMemoryMesh : IAsyncDisposable
{
    private readonly List<MeshNode> _nodes = [];
    private readonly List<Link> _links = [];
    private readonly object _gate = new();

    public sealed record MeshNode(string PeerId, ServedSpan Span, StageServer Server)
    {
        public bool Dead { get; set; }

        /// <summary>Completed never: a stalled node's outgoing bytes wait on it.</summary>
        internal TaskCompletionSource? Stall { get; set; }
    }

    private sealed record Link(string From, string To, Pipe Forward, Pipe Backward);

    public IReadOnlyList<MeshNode> Nodes { get { lock (_gate) return _nodes.ToList(); } }

    public MeshNode AddNode(string splitDirectory, BlockRange blocks, NodeOptions? options = null, InferenceMesh.Compute.ExecutorKind executor = InferenceMesh.Compute.ExecutorKind.Ort)
    {
        var peerId = TestPeers.IdFor($"peer-{_nodes.Count}-{blocks.Start}-{blocks.End}").ToString();
        var span = ServedSpan.Load(splitDirectory, blocks, executor, (options ?? new NodeOptions()).MaxSessions);
        var node = new MeshNode(peerId, span, new StageServer(span, options ?? new NodeOptions(), ConnectorFor(peerId)));
        lock (_gate) _nodes.Add(node);
        return node;
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
        _ = target.Server.ServeAsync(new StageChannel(new DuplexPipe(forward.Reader, serverOutput.Writer)));
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
        }
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
