using System.Buffers;
using System.IO.Pipelines;
using System.Threading.Channels;

namespace InferenceMesh.P2P.Transport;

/// <summary>
/// An in-memory transport: each connection is a pair of <see cref="Pipe"/>s, no sockets. For unit tests
/// and socket-free benchmarks; it runs the same upgrade (multistream, Noise, Yamux) as TCP.
/// </summary>
public sealed class MemoryTransport : ITransport
{
    private readonly MemoryNetwork _network;
    private readonly MemoryPool<byte> _pool;

    /// <param name="network">The in-process network to join.</param>
    /// <param name="pool">Buffer pool for the pipes; <see cref="MemoryPool{T}.Shared"/> when null.</param>
    public MemoryTransport(MemoryNetwork network, MemoryPool<byte>? pool = null)
    {
        _network = network;
        _pool = pool ?? MemoryPool<byte>.Shared;
    }

    public bool CanHandle(Multiaddr address) =>
        address.Components.Count > 0 && address.Components[0].Protocol == MultiaddrProtocol.Memory;

    public ValueTask<ITransportConnection> DialAsync(Multiaddr address, CancellationToken cancellationToken)
    {
        if (!CanHandle(address))
            throw new P2PException(P2PErrorCode.NoTransport, $"memory transport cannot dial {address}");
        var id = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(address.Components[0].Value.Span);
        var listener = _network.Find(id)
            ?? throw new P2PException(P2PErrorCode.ConnectionClosed, $"nothing listens on {address}");
        var (a, b) = CreatePair(Multiaddr.Parse($"/memory/{_network.NextDialerId()}"), listener.ListenAddress, _pool);
        if (!listener.Offer(b))
        {
            a.DisposeAsync().AsTask().GetAwaiter().GetResult();
            b.DisposeAsync().AsTask().GetAwaiter().GetResult();
            throw new P2PException(P2PErrorCode.ConnectionClosed, $"listener {address} is closed");
        }
        return ValueTask.FromResult<ITransportConnection>(a);
    }

    public ValueTask<ITransportListener> ListenAsync(Multiaddr address, CancellationToken cancellationToken)
    {
        if (!CanHandle(address))
            throw new P2PException(P2PErrorCode.NoTransport, $"memory transport cannot listen on {address}");
        var id = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(address.Components[0].Value.Span);
        return ValueTask.FromResult<ITransportListener>(_network.Bind(id));
    }

    /// <summary>A connected pair of in-memory connections, for tests that drive one layer directly.</summary>
    public static (ITransportConnection A, ITransportConnection B) CreatePair(Multiaddr addrA, Multiaddr addrB, MemoryPool<byte>? pool = null)
    {
        var options = new PipeOptions(pool ?? MemoryPool<byte>.Shared, pauseWriterThreshold: 1 << 20, resumeWriterThreshold: 1 << 19,
            minimumSegmentSize: 16384, useSynchronizationContext: false);
        var ab = new Pipe(options);
        var ba = new Pipe(options);
        return (new MemoryConnection(ba.Reader, ab.Writer, addrA, addrB), new MemoryConnection(ab.Reader, ba.Writer, addrB, addrA));
    }

    internal sealed class Listener(MemoryNetwork network, ulong id) : ITransportListener
    {
        private readonly Channel<ITransportConnection> _queue = Channel.CreateBounded<ITransportConnection>(256);

        public Multiaddr ListenAddress { get; } = Multiaddr.Parse($"/memory/{id}");

        internal bool Offer(ITransportConnection c) => _queue.Writer.TryWrite(c);

        public async ValueTask<ITransportConnection> AcceptAsync(CancellationToken cancellationToken)
        {
            try
            {
                return await _queue.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (ChannelClosedException e)
            {
                throw new P2PException(P2PErrorCode.ConnectionClosed, $"listener {ListenAddress} closed", e);
            }
        }

        public async ValueTask DisposeAsync()
        {
            network.Unbind(id);
            _queue.Writer.TryComplete();
            while (_queue.Reader.TryRead(out var c))
                await c.DisposeAsync().ConfigureAwait(false);
        }
    }

    private sealed class MemoryConnection(PipeReader input, PipeWriter output, Multiaddr local, Multiaddr remote) : ITransportConnection
    {
        private int _disposed;

        public PipeReader Input { get; } = input;
        public PipeWriter Output { get; } = output;
        public Multiaddr LocalAddress { get; } = local;
        public Multiaddr RemoteAddress { get; } = remote;

        public void ShutdownWrite() => Output.Complete();

        public void Abort()
        {
            Input.CancelPendingRead();
            Output.CancelPendingFlush();
        }

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Input.Complete();
                Output.Complete();
            }
            return ValueTask.CompletedTask;
        }
    }
}
