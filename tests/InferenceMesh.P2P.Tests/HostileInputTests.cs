using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Security;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

/// <summary>Malformed and hostile bytes at each layer: each ends that connection with a typed error; the host goes on.</summary>
public class HostileInputTests
{
    // ---------------- Yamux, driven by raw frames ----------------

    private static byte[] Frame(byte version, byte type, YamuxFlags flags, uint id, uint length, int payload = 0)
    {
        var b = new byte[12 + payload];
        new YamuxHeader(version, (YamuxFrameType)type, flags, id, length).Write(b);
        return b;
    }

    private static async Task<P2PException> SessionFailsWith(params byte[][] frames)
    {
        var pool = new TrackingMemoryPool();
        var (raw, peer) = MemoryTransport.CreatePair(Multiaddr.Parse("/memory/1"), Multiaddr.Parse("/memory/2"), pool);
        var lines = new LogSink();
        var session = new YamuxSession(peer, isClient: false, new YamuxOptions { Pool = pool, Log = lines.Add });
        session.Start();
        foreach (var f in frames)
            await raw.Output.WriteAsync(f);
        var e = await Assert.ThrowsAsync<P2PException>(() => session.Completion).Within(10);
        // The session answered GoAway(protocol error) before closing.
        var sent = await HostTests.ReadAllAsync(raw.Input, TestHosts.Token(10));
        var goAway = sent.AsSpan(sent.Length - 12);
        Assert.Equal((byte)YamuxFrameType.GoAway, goAway[1]);
        Assert.Equal((uint)YamuxGoAwayCode.ProtocolError, BinaryPrimitives.ReadUInt32BigEndian(goAway[8..]));
        Assert.Single(lines.Lines);
        await session.DisposeAsync();
        await raw.DisposeAsync();
        await peer.DisposeAsync();
        await pool.AssertAllReturnedAsync();
        return e;
    }

    [Fact]
    public async Task YamuxBadVersion() =>
        Assert.Contains("version", (await SessionFailsWith(Frame(1, 1, YamuxFlags.Syn, 1, 0))).Message);

    [Fact]
    public async Task YamuxUnknownType() =>
        Assert.Contains("unknown frame type 7", (await SessionFailsWith(Frame(0, 7, YamuxFlags.None, 0, 0))).Message);

    [Fact]
    public async Task YamuxDataBeyondTheWindow() =>
        Assert.Contains("window", (await SessionFailsWith(Frame(0, 0, YamuxFlags.Syn, 1, YamuxOptions.InitialWindow + 1))).Message);

    [Fact]
    public async Task YamuxSendWindowOverflow() =>
        Assert.Contains("overflow", (await SessionFailsWith(
            Frame(0, 1, YamuxFlags.Syn, 1, 0), Frame(0, 1, YamuxFlags.None, 1, uint.MaxValue))).Message);

    [Fact]
    public async Task YamuxGoAwayIsTheLastFrameEvenWithAnAckQueued()
    {
        // The SYN and the violation arrive in one read, so the ACK is still queued for the control writer when
        // the violation ends the session; it must not race past the GoAway. A race needs many tries to show.
        for (var i = 0; i < 200; i++)
            await SessionFailsWith([.. Frame(0, 1, YamuxFlags.Syn, 1, 0), .. Frame(0, 1, YamuxFlags.None, 1, uint.MaxValue)]);
    }

    [Fact]
    public async Task ARemoteThatNeverReadsDoesNotHoldTheClose()
    {
        // The remote completes the Noise handshake over TCP and then reads nothing, so our socket fills up and
        // the stream's writer blocks inside a socket flush. Closing must still end in bounded time and give
        // every pooled buffer back.
        var pool = new TrackingMemoryPool();
        var noise = await NoiseTcpPair.CreateAsync(pool);
        var channelA = noise.Initiator;

        var session = new YamuxSession(channelA, isClient: true, new YamuxOptions { Pool = pool });
        session.Start();
        var stream = await session.OpenStreamAsync();
        var chunk = new byte[64 * 1024];
        var writing = Task.Run(async () =>
        {
            for (var i = 0; i < 4096; i++)
                if ((await stream.Output.WriteAsync(chunk)).IsCompleted) return;
        });
        // Wait until the socket and the stream's buffer are full: the writer stops making progress.
        await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(2)));
        Assert.False(writing.IsCompleted, "256 MiB should not fit into a socket nobody reads");

        var closing = System.Diagnostics.Stopwatch.StartNew();
        await session.DisposeAsync().AsTask().Within(15);
        await channelA.CloseAsync().AsTask().Within(5);
        Assert.True(closing.Elapsed < TimeSpan.FromSeconds(10), $"closing took {closing.Elapsed}");
        await Assert.ThrowsAnyAsync<Exception>(() => writing.Within(10));
        await stream.DisposeAsync();
        await noise.DisposeAsync();
        await pool.AssertAllReturnedAsync();
    }

    [Fact]
    public async Task YamuxReusedStreamId() =>
        Assert.Contains("reused stream id 1", (await SessionFailsWith(Frame(0, 1, YamuxFlags.Syn, 1, 0), Frame(0, 1, YamuxFlags.Syn, 1, 0))).Message);

    [Fact]
    public async Task YamuxWrongParityAndStreamZero()
    {
        Assert.Contains("parity", (await SessionFailsWith(Frame(0, 1, YamuxFlags.Syn, 2, 0))).Message);
        Assert.Contains("stream id 0", (await SessionFailsWith(Frame(0, 0, YamuxFlags.None, 0, 0))).Message);
    }

    [Fact]
    public async Task YamuxSeededRandomBytesEndSessionsCleanly()
    {
        var rng = new Random(20240601);
        var pool = new TrackingMemoryPool();
        for (var i = 0; i < 2000; i++)
        {
            var (raw, peer) = MemoryTransport.CreatePair(Multiaddr.Parse("/memory/1"), Multiaddr.Parse("/memory/2"), pool);
            var session = new YamuxSession(peer, isClient: i % 2 == 0, new YamuxOptions { Pool = pool });
            session.Start();
            var bytes = new byte[rng.Next(1, 200)];
            rng.NextBytes(bytes);
            if (rng.Next(2) == 0) bytes[0] = 0; // valid version more often, to get deeper
            if (bytes.Length > 1 && rng.Next(2) == 0) bytes[1] = (byte)rng.Next(0, 4);
            await raw.Output.WriteAsync(bytes);
            await raw.Output.CompleteAsync();
            try { await session.Completion.WaitAsync(TimeSpan.FromSeconds(5)); }
            catch (P2PException) { }
            var accepted = new List<YamuxStream>();
            while (true)
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
                try { accepted.Add(await session.AcceptStreamAsync(cts.Token)); }
                catch (Exception e) when (e is P2PException or OperationCanceledException) { break; }
            }
            foreach (var s in accepted) await s.DisposeAsync();
            await session.DisposeAsync();
            await raw.DisposeAsync();
            await peer.DisposeAsync();
        }
        await pool.AssertAllReturnedAsync();
    }

    // ---------------- multistream and Noise against a host ----------------

    private sealed class Target : IAsyncDisposable
    {
        public required Libp2pHost Host { get; init; }
        public required LogSink Log { get; init; }
        public List<P2PException> Failures { get; } = [];
        public required MemoryNetwork Net { get; init; }

        public static async Task<Target> StartAsync()
        {
            var net = new MemoryNetwork();
            var log = new LogSink();
            var host = TestHosts.Create(net, log: log);
            var t = new Target { Host = host, Log = log, Net = net };
            host.ConnectionFailed += (_, _, e) => { lock (t.Failures) t.Failures.Add(e); };
            await host.StartAsync([Multiaddr.Parse("/memory/0")]);
            return t;
        }

        public async Task<ITransportConnection> RawAsync() =>
            await new MemoryTransport(Net).DialAsync(Host.ListenAddresses[0], default);

        /// <summary>Waits for the host to close <paramref name="raw"/> and report a failure, then checks the host still serves.</summary>
        public async Task<P2PException> ExpectFailureAsync(ITransportConnection raw)
        {
            await HostTests.ReadAllAsync(raw.Input, TestHosts.Token(15)).Within(15); // EOF: the host closed it
            for (var i = 0; i < 100; i++)
            {
                lock (Failures) if (Failures.Count > 0) break;
                await Task.Delay(20);
            }
            P2PException e;
            lock (Failures) { Assert.Single(Failures); e = Failures[0]; Failures.Clear(); }
            Assert.Contains(Log.Lines, l => l.Contains(e.P2PCode.ToString()));
            await raw.DisposeAsync();
            await using var client = TestHosts.Create(Net);
            Assert.Single(await client.PingAsync(TestHosts.Dialable(Host), 1, TestHosts.Token()));
            return e;
        }

        public async ValueTask DisposeAsync() => await Host.DisposeAsync();
    }

    private static byte[] Ms(params string[] lines)
    {
        var w = new ArrayBufferWriter<byte>();
        var p = PipeWriter.Create(new MemoryStream());
        var ms = new MemoryStream();
        foreach (var l in lines)
        {
            var b = System.Text.Encoding.UTF8.GetBytes(l + "\n");
            ms.WriteByte((byte)b.Length);
            ms.Write(b);
        }
        return ms.ToArray();
    }

    [Fact]
    public async Task MultistreamLineOverTheLimit()
    {
        await using var t = await Target.StartAsync();
        var raw = await t.RawAsync();
        await raw.Output.WriteAsync(Ms("/multistream/1.0.0"));
        await raw.Output.WriteAsync(new byte[] { 0xff, 0x7f }); // 16383-byte line announced
        Assert.Equal(P2PErrorCode.LimitExceeded, (await t.ExpectFailureAsync(raw)).P2PCode);
    }

    [Fact]
    public async Task NoiseTruncatedMessage()
    {
        await using var t = await Target.StartAsync();
        var raw = await t.RawAsync();
        await raw.Output.WriteAsync(Ms("/multistream/1.0.0", "/noise"));
        await raw.Output.WriteAsync(new byte[] { 0x00, 0x20, 1, 2, 3, 4, 5 }); // says 32 bytes, sends 5
        await raw.Output.CompleteAsync();
        var e = await t.ExpectFailureAsync(raw);
        Assert.Equal(P2PErrorCode.HandshakeFailed, e.P2PCode);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public async Task NoiseOversizedMessage()
    {
        await using var t = await Target.StartAsync();
        var raw = await t.RawAsync();
        await raw.Output.WriteAsync(Ms("/multistream/1.0.0", "/noise"));
        await raw.Output.WriteAsync(new byte[] { 0xff, 0xff });
        var e = await t.ExpectFailureAsync(raw);
        Assert.Equal(P2PErrorCode.HandshakeFailed, e.P2PCode);
        Assert.Contains("exceeds", e.Message);
    }

    [Fact]
    public async Task NoiseWrongIdentitySignatureIsRefusedByTheDialer()
    {
        await using var t = await Target.StartAsync();
        var sig = t.Host.NoiseIdentity.Signature;
        t.Host.NoiseIdentity.Signature = [.. sig[..^1], (byte)(sig[^1] ^ 1)];
        var log = new LogSink();
        await using var client = TestHosts.Create(t.Net, log: log);
        var e = await Assert.ThrowsAsync<P2PException>(() => client.DialAsync(TestHosts.Dialable(t.Host), TestHosts.Token()));
        Assert.Equal(P2PErrorCode.HandshakeFailed, e.P2PCode);
        Assert.Contains("signature", e.Message);
        Assert.Single(log.Lines);
        t.Host.NoiseIdentity.Signature = sig;
        Assert.Single(await client.PingAsync(TestHosts.Dialable(t.Host), 1, TestHosts.Token()));
    }

    [Fact]
    public async Task NoiseWrongIdentitySignatureIsRefusedByTheListener()
    {
        await using var t = await Target.StartAsync();
        await using var client = TestHosts.Create(t.Net);
        var sig = client.NoiseIdentity.Signature;
        client.NoiseIdentity.Signature = [.. sig[..^1], (byte)(sig[^1] ^ 1)];
        // In XX the initiator finishes first, so its dial may return; the listener then refuses and closes.
        try
        {
            var conn = await client.DialAsync(TestHosts.Dialable(t.Host), TestHosts.Token());
            await Assert.ThrowsAnyAsync<Exception>(() => conn.Identified).Within();
            for (var i = 0; i < 100 && !conn.IsClosed; i++) await Task.Delay(20);
            Assert.True(conn.IsClosed);
        }
        catch (P2PException)
        {
        }
        for (var i = 0; i < 100 && t.Failures.Count == 0; i++) await Task.Delay(20);
        Assert.Equal(P2PErrorCode.HandshakeFailed, Assert.Single(t.Failures).P2PCode);
        Assert.Contains("signature", t.Failures[0].Message);
    }

    [Fact]
    public async Task SeededRandomBytesAtTheMultistreamAndNoiseLayers()
    {
        await using var t = await Target.StartAsync();
        var rng = new Random(99);
        for (var i = 0; i < 300; i++)
        {
            var raw = await t.RawAsync();
            if (i % 2 == 1) await raw.Output.WriteAsync(Ms("/multistream/1.0.0", "/noise"));
            var junk = new byte[rng.Next(1, 300)];
            rng.NextBytes(junk);
            await raw.Output.WriteAsync(junk);
            await raw.Output.CompleteAsync();
            await HostTests.ReadAllAsync(raw.Input, TestHosts.Token(10)).Within(10);
            await raw.DisposeAsync();
        }
        for (var i = 0; i < 100 && t.Failures.Count < 300; i++) await Task.Delay(20);
        lock (t.Failures)
        {
            Assert.Equal(300, t.Failures.Count);
            Assert.All(t.Failures, f => Assert.Contains(f.P2PCode, new[]
            {
                P2PErrorCode.ProtocolViolation, P2PErrorCode.LimitExceeded, P2PErrorCode.HandshakeFailed,
                P2PErrorCode.ConnectionClosed, P2PErrorCode.ProtocolNotSupported,
            }));
        }
        await using var client = TestHosts.Create(t.Net);
        Assert.Single(await client.PingAsync(TestHosts.Dialable(t.Host), 1, TestHosts.Token()));
    }

    [Fact]
    public async Task NoisePayloadDecoderRejectsRandomBytes()
    {
        var rng = new Random(5);
        using var key = Ed25519KeyPair.Generate();
        for (var i = 0; i < 3000; i++)
        {
            var b = new byte[rng.Next(0, 200)];
            rng.NextBytes(b);
            var e = Assert.Throws<P2PException>(() => Noise.DecodeAndVerify(b, new byte[32]));
            Assert.True(e.P2PCode is P2PErrorCode.HandshakeFailed or P2PErrorCode.LimitExceeded, e.Message);
        }
    }

    [Fact]
    public async Task IdentifyDecoderSurvivesRandomBytes()
    {
        var rng = new Random(6);
        for (var i = 0; i < 3000; i++)
        {
            var b = new byte[rng.Next(0, 200)];
            rng.NextBytes(b);
            try { IdentifyCodec.Decode(b); } catch (P2PException) { }
        }
        await Task.CompletedTask;
    }
}
