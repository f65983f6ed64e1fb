using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Security;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>
/// Muxer conformance, in the spirit of go-libp2p's suite: the same tests over every stack, each
/// ending with every pooled buffer returned.
/// </summary>
public class YamuxConformanceTests
{
    public static TheoryData<string> Stacks => new() { "memory", "noise-tcp" };

    private static async Task Echo(YamuxStream s)
    {
        while (true)
        {
            var r = await s.Input.ReadAsync();
            foreach (var seg in r.Buffer) await s.Output.WriteAsync(seg);
            s.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await s.DisposeAsync();
    }

    private static Task ServeEchoAsync(YamuxSession session, CancellationToken ct) => Task.Run(async () =>
    {
        var tasks = new List<Task>();
        try
        {
            while (true) tasks.Add(Echo(await session.AcceptStreamAsync(ct)));
        }
        catch (Exception e) when (e is P2PException or OperationCanceledException) { }
        await Task.WhenAll(tasks);
    });

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task ThousandStreamsEcho(string stack)
    {
        var pool = await Run(stack, async (p, ct) =>
        {
            var server = ServeEchoAsync(p.B, ct);
            var tasks = Enumerable.Range(0, 1000).Select(async i =>
            {
                var s = await p.A.OpenStreamAsync(ct);
                var data = RandomNumberGenerator.GetBytes(1 + i % 2048);
                var read = HostTests.ReadAllAsync(s.Input, ct);
                await s.Output.WriteAsync(data, ct);
                await s.Output.CompleteAsync();
                Assert.Equal(data, await read);
                await s.DisposeAsync();
            });
            await Task.WhenAll(tasks).Within(60);
            for (var i = 0; i < 100 && (p.A.StreamCount > 0 || p.B.StreamCount > 0); i++) await Task.Delay(20, ct);
            Assert.Equal(0, p.A.StreamCount);
            Assert.Equal(0, p.B.StreamCount);
        });
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task ResetFailsBothSidesAndSessionGoesOn(string stack)
    {
        await Run(stack, async (p, ct) =>
        {
            var s = await p.A.OpenStreamAsync(ct);
            await s.Output.WriteAsync(new byte[10], ct);
            var r = await p.B.AcceptStreamAsync(ct);
            var first = await r.Input.ReadAsync(ct);
            r.Input.AdvanceTo(first.Buffer.End);
            s.Reset();
            var e = await Assert.ThrowsAsync<P2PException>(async () =>
            {
                while (true)
                {
                    var x = await r.Input.ReadAsync(ct);
                    r.Input.AdvanceTo(x.Buffer.End);
                    if (x.IsCompleted) break;
                }
            }).Within();
            Assert.Equal(P2PErrorCode.StreamReset, e.P2PCode);
            // the remote's writes now fail too
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                for (var i = 0; i < 100; i++) { await r.Output.WriteAsync(new byte[1000], ct); await Task.Delay(10, ct); }
            }).Within();
            Assert.Equal(P2PErrorCode.StreamReset, Assert.Throws<P2PException>(() => { var _ = s.Input.ReadAsync(ct).AsTask().GetAwaiter().GetResult(); }).P2PCode);
            await s.DisposeAsync();
            await r.DisposeAsync();
            // a new stream still works
            var server = ServeEchoAsync(p.B, ct);
            var s2 = await p.A.OpenStreamAsync(ct);
            var read = HostTests.ReadAllAsync(s2.Input, ct);
            await s2.Output.WriteAsync("ok"u8.ToArray(), ct);
            await s2.Output.CompleteAsync();
            Assert.Equal("ok"u8.ToArray(), await read.Within());
            await s2.DisposeAsync();
        });
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task HalfCloseLetsTheOtherSideKeepWriting(string stack)
    {
        await Run(stack, async (p, ct) =>
        {
            var s = await p.A.OpenStreamAsync(ct);
            await s.Output.WriteAsync("question"u8.ToArray(), ct);
            await s.Output.CompleteAsync(); // FIN
            var r = await p.B.AcceptStreamAsync(ct);
            Assert.Equal("question"u8.ToArray(), await HostTests.ReadAllAsync(r.Input, ct).Within());
            var answer = RandomNumberGenerator.GetBytes(700_000); // beyond the initial window
            var reading = HostTests.ReadAllAsync(s.Input, ct);
            await r.Output.WriteAsync(answer, ct);
            await r.Output.CompleteAsync();
            Assert.Equal(answer, await reading.Within());
            await s.DisposeAsync();
            await r.DisposeAsync();
        });
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task WriteAfterCloseThrows(string stack)
    {
        await Run(stack, async (p, ct) =>
        {
            var s = await p.A.OpenStreamAsync(ct);
            await s.Output.CompleteAsync();
            await Assert.ThrowsAsync<InvalidOperationException>(async () => await s.Output.WriteAsync(new byte[1], ct));
            var r = await p.B.AcceptStreamAsync(ct);
            Assert.Empty(await HostTests.ReadAllAsync(r.Input, ct).Within());
            await s.DisposeAsync();
            await r.DisposeAsync();
        });
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task WindowExhaustionStallsTheWriterThenRecovers(string stack)
    {
        await Run(stack, async (p, ct) =>
        {
            var s = await p.A.OpenStreamAsync(ct);
            var data = RandomNumberGenerator.GetBytes(4 * 1024 * 1024);
            var writing = Task.Run(async () =>
            {
                for (var off = 0; off < data.Length; off += 65536)
                    await s.Output.WriteAsync(data.AsMemory(off, 65536), ct);
                await s.Output.CompleteAsync();
            }, ct);
            var r = await p.B.AcceptStreamAsync(ct);
            await Task.Delay(300, ct);
            // Nobody reads on B: A can only have sent its 256 KiB window, and buffers at most StreamWriteBuffer more.
            Assert.False(writing.IsCompleted);
            var peek = await r.Input.ReadAsync(ct);
            Assert.Equal(YamuxOptions.InitialWindow, peek.Buffer.Length);
            r.Input.AdvanceTo(peek.Buffer.Start, peek.Buffer.End);
            // Now read everything: the writer recovers.
            var all = await HostTests.ReadAllAsync(r.Input, ct).Within(30);
            await writing.Within();
            Assert.Equal(data, all);
            await s.DisposeAsync();
            await r.DisposeAsync();
        });
    }

    [Theory]
    [MemberData(nameof(Stacks))]
    public async Task PingAndGoAway(string stack)
    {
        await Run(stack, async (p, ct) =>
        {
            Assert.True((await p.A.PingAsync(ct).Within()) > TimeSpan.Zero);
            Assert.True((await p.B.PingAsync(ct).Within()) > TimeSpan.Zero);
            await p.A.DisposeAsync(); // GoAway
            var e = await Assert.ThrowsAsync<P2PException>(async () => await p.B.AcceptStreamAsync(ct)).Within();
            Assert.Equal(P2PErrorCode.ConnectionClosed, e.P2PCode);
            await Assert.ThrowsAsync<P2PException>(() => p.B.OpenStreamAsync(ct)).Within();
        });
    }

    [Fact]
    public async Task ConcurrentStreamLimitIsEnforcedBothWays()
    {
        await Run("memory", async (p, ct) =>
        {
            var open = new List<YamuxStream>();
            for (var i = 0; i < 4; i++) open.Add(await p.A.OpenStreamAsync(ct));
            var e = await Assert.ThrowsAsync<P2PException>(() => p.A.OpenStreamAsync(ct));
            Assert.Equal(P2PErrorCode.LimitExceeded, e.P2PCode);
            // B has 4 inbound; one more from B's side would exceed B's limit.
            var accepted = new List<YamuxStream>();
            for (var i = 0; i < 4; i++) accepted.Add(await p.B.AcceptStreamAsync(ct));
            await Assert.ThrowsAsync<P2PException>(() => p.B.OpenStreamAsync(ct));
            foreach (var s in open) { s.Reset(); await s.DisposeAsync(); }
            foreach (var s in accepted) await s.DisposeAsync();
            for (var i = 0; i < 100 && p.A.StreamCount > 0; i++) await Task.Delay(20, ct);
            Assert.Equal(0, p.A.StreamCount);
        }, new YamuxOptions { MaxConcurrentStreams = 4 });
    }

    private static async Task<TrackingMemoryPool> Run(string stack, Func<MuxerPair, CancellationToken, Task> body, YamuxOptions? options = null)
    {
        var ct = TestHosts.Token(60);
        var p = await MuxerPair.CreateAsync(stack, options);
        try
        {
            await body(p, ct);
        }
        catch (Exception e)
        {
            throw new Exception($"{e.Message}; session A: {p.A.Completion.Exception?.InnerException?.Message ?? "ok"}; session B: {p.B.Completion.Exception?.InnerException?.Message ?? "ok"}", e);
        }
        finally
        {
            await p.DisposeAsync();
        }
        await p.Pool.AssertAllReturnedAsync();
        return p.Pool;
    }
}

public class YamuxAckBacklogTests
{
    private static byte[] Frame(YamuxFrameType type, YamuxFlags flags, uint id, uint length)
    {
        var b = new byte[12];
        new YamuxHeader(0, type, flags, id, length).Write(b);
        return b;
    }

    [Fact]
    public async Task UnacknowledgedStreamsBlockOpeningUntilTheRemoteAnswers()
    {
        var (raw, peer) = MemoryTransport.CreatePair(Multiaddr.Parse("/memory/1"), Multiaddr.Parse("/memory/2"));
        await using var session = new YamuxSession(peer, isClient: true, new YamuxOptions { MaxUnackedOutboundStreams = 2 });
        session.Start();
        var s1 = await session.OpenStreamAsync();
        var s3 = await session.OpenStreamAsync();
        using (var cts = new CancellationTokenSource(300))
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => session.OpenStreamAsync(cts.Token));
        // The remote answers stream 1 with data and FIN but no ACK flag (its ACK is late): that frees a slot.
        await raw.Output.WriteAsync(Frame(YamuxFrameType.Data, YamuxFlags.Fin, s1.Id, 0));
        var s5 = await session.OpenStreamAsync().Within(5);
        Assert.Equal(5u, s5.Id);
        // An explicit ACK frees another.
        await raw.Output.WriteAsync(Frame(YamuxFrameType.WindowUpdate, YamuxFlags.Ack, s3.Id, 0));
        Assert.Equal(7u, (await session.OpenStreamAsync().Within(5)).Id);
        await raw.DisposeAsync();
    }
}
