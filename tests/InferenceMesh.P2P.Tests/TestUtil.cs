using System.Buffers;
using System.Collections.Concurrent;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Security;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>A MemoryPool that counts what is rented and not yet returned.</summary>
public sealed class TrackingMemoryPool : MemoryPool<byte>
{
    // Each outstanding buffer's requested size, or where it was rented when TRACK_POOL_STACKS=1 (costly, so off by default).
    private static readonly bool CaptureStacks = Environment.GetEnvironmentVariable("TRACK_POOL_STACKS") == "1";
    private readonly ConcurrentDictionary<Owner, string> _rentals = new();
    private int _outstanding;
    private long _rented;

    public int Outstanding => Volatile.Read(ref _outstanding);
    public long Rented => Interlocked.Read(ref _rented);
    public override int MaxBufferSize => int.MaxValue;

    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        Interlocked.Increment(ref _outstanding);
        Interlocked.Increment(ref _rented);
        var owner = new Owner(this, ArrayPool<byte>.Shared.Rent(minBufferSize <= 0 ? 4096 : minBufferSize));
        _rentals[owner] = CaptureStacks ? Environment.StackTrace : $"{minBufferSize} bytes asked";
        return owner;
    }

    protected override void Dispose(bool disposing) { }

    /// <summary>Waits up to a few seconds for every buffer to come back (pumps finish asynchronously).</summary>
    public async Task AssertAllReturnedAsync()
    {
        for (var i = 0; i < 100 && Outstanding != 0; i++)
            await Task.Delay(50);
        Assert.True(Outstanding == 0, $"{Outstanding} pooled buffers not returned (of {Rented} rented)" +
            "; rented as:\n" + string.Join("\n---\n", _rentals.Values) + (CaptureStacks ? "" : "\n(set TRACK_POOL_STACKS=1 to see where they were rented)"));
    }

    private sealed class Owner(TrackingMemoryPool pool, byte[] array) : IMemoryOwner<byte>
    {
        private byte[]? _array = array;
        public Memory<byte> Memory => _array ?? throw new ObjectDisposedException(nameof(Owner));

        public void Dispose()
        {
            var a = Interlocked.Exchange(ref _array, null);
            if (a is null) return;
            ArrayPool<byte>.Shared.Return(a);
            pool._rentals.TryRemove(this, out _);
            Interlocked.Decrement(ref pool._outstanding);
        }
    }
}

/// <summary>Collects log lines from hosts under test.</summary>
public sealed class LogSink
{
    public ConcurrentQueue<string> Lines { get; } = new();
    public void Add(string line) => Lines.Enqueue(line);
}

/// <summary>Two Noise channels over a loopback TCP connection, with the keys they were made from.</summary>
public sealed class NoiseTcpPair : IAsyncDisposable
{
    private readonly IDisposable[] _keys;

    private NoiseTcpPair(NoiseSecureChannel initiator, NoiseSecureChannel responder, IDisposable[] keys)
    {
        Initiator = initiator;
        Responder = responder;
        _keys = keys;
    }

    public NoiseSecureChannel Initiator { get; }
    public NoiseSecureChannel Responder { get; }

    public static async Task<NoiseTcpPair> CreateAsync(MemoryPool<byte> pool)
    {
        var tcp = new TcpTransport(pool);
        await using var listener = await tcp.ListenAsync(Multiaddr.Parse("/ip4/127.0.0.1/tcp/0"), default);
        var accept = listener.AcceptAsync(default).AsTask();
        var rawA = await tcp.DialAsync(listener.ListenAddress, default);
        var rawB = await accept;
        var keyA = Ed25519KeyPair.Generate();
        var keyB = Ed25519KeyPair.Generate();
        var noiseA = new NoiseIdentity(keyA);
        var noiseB = new NoiseIdentity(keyB);
        var responding = Noise.RespondAsync(rawB, noiseB, [], pool, default);
        var initiator = await Noise.InitiateAsync(rawA, noiseA, [], keyB.PeerId, pool, default);
        return new NoiseTcpPair(initiator, await responding, [noiseA, noiseB, keyA, keyB]);
    }

    /// <summary>Closes both channels (each waits up to a second for unsent bytes).</summary>
    public async ValueTask DisposeAsync()
    {
        await Initiator.CloseAsync();
        await Responder.CloseAsync();
        foreach (var k in _keys) k.Dispose();
    }
}

public static class TestHosts
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    public static CancellationToken Token(int seconds = 20) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;

    public static Libp2pHost Create(MemoryNetwork? network = null, MemoryPool<byte>? pool = null, LogSink? log = null,
        bool early = true, YamuxOptions? yamux = null, Ed25519KeyPair? key = null, Func<Libp2pHostOptions, Libp2pHostOptions>? configure = null)
    {
        var transports = new List<ITransport> { new TcpTransport(pool) };
        if (network is not null) transports.Insert(0, new MemoryTransport(network, pool));
        var options = new Libp2pHostOptions
        {
            Identity = key ?? Ed25519KeyPair.Generate(),
            Transports = transports,
            Pool = pool,
            Log = log is null ? null : log.Add,
            EarlyMuxerNegotiation = early,
            Yamux = yamux ?? new YamuxOptions(),
            HandshakeTimeout = TimeSpan.FromSeconds(10),
        };
        return new Libp2pHost(configure?.Invoke(options) ?? options);
    }

    public static Multiaddr Dialable(Libp2pHost host) => host.ListenAddresses[0].WithPeerId(host.PeerId);

    /// <summary>Polls <paramref name="condition"/> every 20 ms; fails the test, naming <paramref name="what"/>, after <paramref name="seconds"/>.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, string what, int seconds = 10)
    {
        for (var waited = 0; !condition(); waited += 20)
        {
            if (waited > seconds * 1000)
                Assert.Fail($"{what} did not happen within {seconds} s");
            await Task.Delay(20);
        }
    }

    public static async Task<T> Within<T>(this Task<T> task, int seconds = 20) => await task.WaitAsync(TimeSpan.FromSeconds(seconds));
    public static async Task Within(this Task task, int seconds = 20) => await task.WaitAsync(TimeSpan.FromSeconds(seconds));
}
