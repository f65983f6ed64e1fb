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
    private readonly List<MeshNode> nodes = [];
    private readonly List<Link> links = [];
    private readonly object gate = new();

    public sealed record MeshNode(string PeerId, ServedSpan Span, StageServer Server)
    {
        public bool Dead { get; set; }
    }

    private sealed record Link(string From, string To, Pipe Forward, Pipe Backward);

    public IReadOnlyList<MeshNode> Nodes { get { lock (gate) return nodes.ToList(); } }

    public MeshNode AddNode(string splitDirectory, BlockRange blocks, NodeOptions? options = null, InferenceMesh.Compute.ExecutorKind executor = InferenceMesh.Compute.ExecutorKind.Ort)
    {
        var peerId = $"peer-{nodes.Count}-{blocks.Start}-{blocks.End}";
        var span = ServedSpan.Load(splitDirectory, blocks, executor, (options ?? new NodeOptions()).MaxSessions);
        var node = new MeshNode(peerId, span, new StageServer(span, options ?? new NodeOptions(), ConnectorFor(peerId)));
        lock (gate) nodes.Add(node);
        return node;
    }

    /// <summary>The connector a peer uses to open streams to others.</summary>
    public IStageConnector ConnectorFor(string peerId) => new Connector(this, peerId);

    public void Kill(string peerId)
    {
        List<Link> cut;
        lock (gate)
        {
            nodes.Single(n => n.PeerId == peerId).Dead = true;
            cut = links.Where(l => l.From == peerId || l.To == peerId).ToList();
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
        lock (gate)
        {
            target = nodes.SingleOrDefault(n => n.PeerId == to) ?? throw new IOException($"no route to {to}");
            if (target.Dead || nodes.Any(n => n.PeerId == from && n.Dead)) throw new IOException($"connection to {to} refused");
        }
        var forward = new Pipe();
        var backward = new Pipe();
        lock (gate) links.Add(new Link(from, to, forward, backward));
        _ = target.Server.ServeAsync(new StageChannel(new DuplexPipe(forward.Reader, backward.Writer)));
        return new DuplexPipe(backward.Reader, forward.Writer);
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
