using System.IO.Pipelines;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>A connected pair of Yamux sessions over some transport stack, for the conformance suite.</summary>
public sealed class MuxerPair : IAsyncDisposable
{
    private readonly List<Func<ValueTask>> _cleanup = [];
    public required YamuxSession A { get; init; }
    public required YamuxSession B { get; init; }
    public required TrackingMemoryPool Pool { get; init; }

    public static async Task<MuxerPair> CreateAsync(string stack, YamuxOptions? options = null)
    {
        var pool = new TrackingMemoryPool();
        var opts = (options ?? new YamuxOptions()) with { Pool = pool };
        IDuplexPipe pa, pb;
        var cleanup = new List<Func<ValueTask>>();
        switch (stack)
        {
            case "memory":
                var (ca, cb) = MemoryTransport.CreatePair(Multiaddr.Parse("/memory/1"), Multiaddr.Parse("/memory/2"), pool);
                (pa, pb) = (ca, cb);
                cleanup.Add(ca.DisposeAsync);
                cleanup.Add(cb.DisposeAsync);
                break;
            case "noise-tcp":
                var noise = await NoiseTcpPair.CreateAsync(pool);
                (pa, pb) = (noise.Initiator, noise.Responder);
                cleanup.Add(noise.DisposeAsync);
                break;
            default:
                throw new ArgumentException(stack);
        }
        var a = new YamuxSession(pa, isClient: true, opts);
        var b = new YamuxSession(pb, isClient: false, opts);
        a.Start();
        b.Start();
        var pair = new MuxerPair { A = a, B = b, Pool = pool };
        pair._cleanup.AddRange(cleanup);
        return pair;
    }

    public async ValueTask DisposeAsync()
    {
        await A.DisposeAsync();
        await B.DisposeAsync();
        foreach (var c in _cleanup) await c();
    }
}
