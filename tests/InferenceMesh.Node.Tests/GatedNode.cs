using System.Collections.Concurrent;
using System.IO.Pipelines;
using InferenceMesh.Core;
using InferenceMesh.Protocol;
using InferenceMesh.Tests.Shared;

namespace InferenceMesh.Node.Tests;

/// <summary>
/// A <see cref="StageServer"/> serving block 0 of stories260K through a <see cref="GatedExecutor"/>, reached over
/// in-memory pipes that a test can break; it chains no steps (its connector reaches an empty mesh). Its log lines
/// are kept; each "stage stream failed" line also releases <see cref="StreamFailures"/>.
/// </summary>
internal sealed class GatedNode : IAsyncDisposable
{
    private readonly ServedSpan _loaded;
    private readonly ServedSpan _served;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly InMemoryMesh _nowhere = new();

    public GatedNode(NodeOptions options, TimeProvider? clock = null)
    {
        _loaded = ServedSpan.Load(MeshModels.Stories260KPerBlock, new BlockRange(0, 1), maxSessions: options.MaxSessions);
        Executor = new GatedExecutor(_loaded.Stages[0]);
        _served = new ServedSpan(_loaded.Manifest, [Executor]);
        Server = new StageServer(_served, options, _nowhere.ConnectorFor("gated"), Log, clock);
    }

    public GatedExecutor Executor { get; }
    public StageServer Server { get; }
    public string ModelId => _loaded.Manifest.ModelId;
    public BlockRange Blocks => _loaded.Blocks;
    public IReadOnlyCollection<string> LogLines => _log;
    public SemaphoreSlim StreamFailures { get; } = new(0);

    public static TensorData Activation(int positions) =>
        TensorData.FromFloats([1, positions, 64], Enumerable.Range(0, positions * 64).Select(i => (i % 7) * 0.1f).ToArray());

    private void Log(string line)
    {
        _log.Enqueue(line);
        if (line.StartsWith("stage stream failed", StringComparison.Ordinal)) StreamFailures.Release();
    }

    /// <summary>Opens a stream to the server: the client's channel, the server's serving task, and the two pipes to break.</summary>
    public Connection Connect()
    {
        var toServer = new Pipe();
        var toClient = new Pipe();
        var serving = Server.ServeAsync(new StageChannel(new DuplexPipe(toServer.Reader, toClient.Writer)));
        return new Connection(new StageChannel(new DuplexPipe(toClient.Reader, toServer.Writer)), serving, toServer, toClient);
    }

    /// <summary>Opens <paramref name="sessionId"/> with room for <paramref name="maxLength"/> positions and checks that it opened.</summary>
    public async Task OpenAsync(StageChannel client, string sessionId, int maxLength = 8)
    {
        await client.SendAsync(new OpenSession(1, sessionId, ModelId, Blocks, maxLength));
        Assert.IsType<SessionOpened>(await client.ReceiveAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10)));
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        _served.Dispose();
        _loaded.Dispose();
        await _nowhere.DisposeAsync();
        StreamFailures.Dispose();
    }

    internal sealed record Connection(StageChannel Client, Task Serving, Pipe ToServer, Pipe ToClient)
    {
        /// <summary>Breaks the stream as a vanished client would: what it sent fails, and it reads nothing more.</summary>
        public void Break()
        {
            ToServer.Writer.Complete(new IOException("the client vanished"));
            ToClient.Reader.Complete();
        }
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
