using System.Buffers;
using System.IO.Pipelines;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Transport;

namespace InferenceMesh.P2P.Tests;

public class MultistreamTests
{
    private static (ITransportConnection, ITransportConnection) Pair() =>
        MemoryTransport.CreatePair(Multiaddr.Parse("/memory/1"), Multiaddr.Parse("/memory/2"));

    [Fact]
    public async Task SelectNegotiatesAfterNa()
    {
        var (a, b) = Pair();
        var ct = TestHosts.Token();
        var listen = Multistream.ListenAsync(b, p => p == "/b", ct);
        var chosen = await Multistream.SelectAsync(a, ["/a", "/b"], ct).Within();
        Assert.Equal("/b", chosen);
        Assert.Equal("/b", await listen.Within());
    }

    [Fact]
    public async Task WireBytesAreExact()
    {
        var (a, b) = Pair();
        var ct = TestHosts.Token();
        var select = Multistream.SelectAsync(a, ["/x"], ct);
        var r = await b.Input.ReadAsync(ct);
        var expected = "\u0013/multistream/1.0.0\n\u0003/x\n"u8.ToArray();
        while (r.Buffer.Length < expected.Length) { b.Input.AdvanceTo(r.Buffer.Start, r.Buffer.End); r = await b.Input.ReadAsync(ct); }
        Assert.Equal(expected, r.Buffer.ToArray());
        b.Input.AdvanceTo(r.Buffer.End);
        await b.Output.WriteAsync("\u0013/multistream/1.0.0\n\u0003na\n"u8.ToArray(), ct);
        var e = await Assert.ThrowsAsync<P2PException>(() => select);
        Assert.Equal(P2PErrorCode.ProtocolNotSupported, e.P2PCode);
    }

    [Fact]
    public async Task ListenerLeavesDataAfterTheAcceptedLineUnread()
    {
        var (a, b) = Pair();
        var ct = TestHosts.Token();
        await a.Output.WriteAsync("\u0013/multistream/1.0.0\n\u0003/x\nHELLO"u8.ToArray(), ct);
        Assert.Equal("/x", await Multistream.ListenAsync(b, p => p == "/x", ct).Within());
        var r = await b.Input.ReadAsync(ct);
        Assert.Equal("HELLO"u8.ToArray(), r.Buffer.ToArray());
    }

    [Fact]
    public async Task LineOverTheLimitIsRejectedBeforeReadingIt()
    {
        var (a, b) = Pair();
        var ct = TestHosts.Token();
        var listen = Multistream.ListenAsync(b, _ => true, ct);
        await a.Output.WriteAsync("\u0013/multistream/1.0.0\n"u8.ToArray(), ct);
        await a.Output.WriteAsync(new byte[] { 0x81, 0x08 }, ct); // length 1025, body never sent
        var e = await Assert.ThrowsAsync<P2PException>(() => listen).Within();
        Assert.Equal(P2PErrorCode.LimitExceeded, e.P2PCode);
    }

    [Theory]
    [InlineData(new byte[] { 0x03, (byte)'/', (byte)'x', (byte)'y' })] // no newline
    [InlineData(new byte[] { 0x00 })] // empty
    [InlineData(new byte[] { 0x02, 0xff, (byte)'\n' })] // not UTF-8
    public void Malformed_Messages_Are_Typed_Errors(byte[] bytes)
    {
        var seq = new ReadOnlySequence<byte>(bytes);
        var e = Assert.Throws<P2PException>(() => Multistream.TryParseMessage(ref seq, out _));
        Assert.Equal(P2PErrorCode.ProtocolViolation, e.P2PCode);
    }

    [Fact]
    public void RandomBytesNeverCrashTheParser()
    {
        var rng = new Random(42);
        for (var i = 0; i < 5000; i++)
        {
            var b = new byte[rng.Next(0, 64)];
            rng.NextBytes(b);
            if (b.Length > 0 && rng.Next(2) == 0) b[0] = (byte)rng.Next(0, 40);
            var seq = new ReadOnlySequence<byte>(b);
            try
            {
                while (Multistream.TryParseMessage(ref seq, out _)) { }
            }
            catch (P2PException) { }
        }
    }
}
