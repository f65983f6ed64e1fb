using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Protocols;

namespace InferenceMesh.P2P.Tests;

/// <summary>
/// Interop with js-libp2p 3.x (tests/interop, installed by `npm ci --prefix tests/interop`), both directions
/// and both muxer-selection paths. These fail, not skip, when node or the packages are missing.
/// </summary>
[Collection("interop")]
public class InteropTests
{
    public const string Bulk = "/inferencemesh/test/bulk/1.0.0";
    private const int Streams = 64;
    private const int Size = 4 * 1024 * 1024;

    /// <summary>The same deterministic bytes as peer.mjs's pattern().</summary>
    internal static byte[] Pattern(int size, int seed)
    {
        var b = new byte[size];
        var x = unchecked((uint)seed * 2654435761u);
        for (var i = 0; i < size; i += 4)
        {
            x = unchecked(x * 1664525u + 1013904223u);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(i), x);
        }
        return b;
    }

    /// <summary>Bulk server: hash everything until FIN, answer the 32-byte SHA-256.</summary>
    internal static async Task ServeBulkAsync(Libp2pStream s, CancellationToken ct)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        while (true)
        {
            var r = await s.Input.ReadAsync(ct);
            foreach (var seg in r.Buffer) hash.AppendData(seg.Span);
            s.Input.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        await s.Output.WriteAsync(hash.GetHashAndReset(), ct);
        await s.Output.CompleteAsync();
    }

    /// <summary>Bulk client: send the pattern, half-close, compare the digest.</summary>
    internal static Task<bool> SendBulkAsync(Libp2pConnection conn, int size, int seed, CancellationToken ct)
    {
        var data = Pattern(size, seed);
        return SendDataAsync(conn, data, SHA256.HashData(data), ct);
    }

    /// <summary>Sends prepared bytes, half-closes, and compares the digest the server answers with <paramref name="expected"/>.</summary>
    internal static async Task<bool> SendDataAsync(Libp2pConnection conn, byte[] data, byte[] expected, CancellationToken ct)
    {
        var size = data.Length;
        await using var s = await conn.OpenStreamAsync(Bulk, ct);
        for (var off = 0; off < size; off += 65536)
            await s.Output.WriteAsync(data.AsMemory(off, Math.Min(65536, size - off)), ct);
        await s.Output.CompleteAsync();
        var digest = await HostTests.ReadAllAsync(s.Input, ct);
        return digest.AsSpan().SequenceEqual(expected);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task CSharpDialsJs(bool early)
    {
        var ct = TestHosts.Token(90);
        await using var js = JsPeer.Start(new { mode = "listen", early });
        var ready = await js.WaitAsync("ready");
        var jsAddr = Multiaddr.Parse(ready.GetProperty("listen")[0].GetString()!);
        var log = new LogSink();
        await using var host = TestHosts.Create(log: log, early: early);
        host.SetHandler(Bulk, ServeBulkAsync);
        await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);

        var conn = await host.DialAsync(jsAddr, ct);
        Assert.Equal(jsAddr.PeerId, conn.RemotePeer);
        Assert.Equal(early, conn.MuxerFromHandshake);

        // We identified js ...
        var info = await conn.Identified.Within(30);
        Assert.Equal(conn.RemotePeer, info.PeerId);
        Assert.Contains(Bulk, info.Protocols);
        Assert.Contains(PingProtocol.ProtocolId, info.Protocols);
        Assert.Contains(jsAddr.WithoutPeerId(), info.ListenAddresses);
        Assert.StartsWith("js-libp2p/", info.AgentVersion);
        // ... and js identified us.
        var jsSaw = await js.WaitAsync("identify", 30, e => e.GetProperty("peerId").GetString() == host.PeerId.ToString());
        var protocols = jsSaw.GetProperty("protocols").EnumerateArray().Select(p => p.GetString()).ToList();
        Assert.Contains(Bulk, protocols);
        Assert.Contains(IdentifyCodec.PushProtocolId, protocols);
        Assert.Contains(host.ListenAddresses[0].ToString(), jsSaw.GetProperty("listenAddrs").EnumerateArray().Select(a => a.GetString()));
        Assert.Equal("inferencemesh/0.1.0", jsSaw.GetProperty("agentVersion").GetString());

        // Ping (js allows only 1-2 concurrent pings per connection: sequential on one stream).
        var rtts = await host.PingAsync(jsAddr, 3, ct);
        Assert.Equal(3, rtts.Count);

        // Identify-push from js: it registers a protocol, we hear of it.
        await js.SendLineAsync("handle /late/1.0.0");
        await js.WaitAsync("handled");
        for (var i = 0; i < 100 && !(conn.RemoteInfo?.Protocols.Contains("/late/1.0.0") ?? false); i++)
            await Task.Delay(50, ct);
        Assert.Contains("/late/1.0.0", conn.RemoteInfo!.Protocols);

        // 64 concurrent streams x 4 MiB, checksummed by js.
        bool[] results;
        try
        {
            results = await Task.WhenAll(Enumerable.Range(1, Streams).Select(i => SendBulkAsync(conn, Size, i, ct))).Within(80);
        }
        catch (P2PException e)
        {
            throw new Xunit.Sdk.XunitException($"bulk streams to js failed: {e.Message}\njs stderr:\n{js.Stderr}", e);
        }
        Assert.All(results, Assert.True);
        Assert.DoesNotContain(log.Lines, l => !l.Contains("identify"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task JsDialsCSharp(bool early)
    {
        var ct = TestHosts.Token(90);
        var log = new LogSink();
        await using var host = TestHosts.Create(log: log, early: early);
        host.SetHandler(Bulk, ServeBulkAsync);
        await host.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")], ct);
        var connected = new TaskCompletionSource<Libp2pConnection>(TaskCreationOptions.RunContinuationsAsynchronously);
        host.Connected += c => connected.TrySetResult(c);

        await using var js = JsPeer.Start(new { mode = "dial", early, target = TestHosts.Dialable(host).ToString(), streams = Streams, size = Size });
        var c1 = await js.WaitAsync("connected");
        Assert.Equal(host.PeerId.ToString(), c1.GetProperty("remotePeer").GetString());
        Assert.Equal("/yamux/1.0.0", c1.GetProperty("muxer").GetString());
        var conn = await connected.Task.Within(30);
        Assert.Equal(early, conn.MuxerFromHandshake);
        Assert.False(conn.IsOutbound);

        var jsSaw = await js.WaitAsync("identify", 30);
        Assert.Equal(host.PeerId.ToString(), jsSaw.GetProperty("peerId").GetString());
        Assert.Contains(Bulk, jsSaw.GetProperty("protocols").EnumerateArray().Select(p => p.GetString()));
        Assert.Equal(conn.RemoteAddress.ToString(), jsSaw.GetProperty("observedAddr").GetString()!.Split("/p2p/")[0]);

        var info = await conn.Identified.Within(30);
        Assert.Equal(conn.RemotePeer, info.PeerId);
        Assert.Contains(Bulk, info.Protocols);

        var ping = await js.WaitAsync("ping");
        Assert.True(ping.GetProperty("rtt").GetDouble() >= 0);

        var bulk = await js.WaitAsync("bulk", 80);
        Assert.Equal(Streams, bulk.GetProperty("ok").GetInt32());
        Assert.Equal(0, bulk.GetProperty("failed").GetInt32());
        Assert.Equal(0, await js.WaitExitAsync());
        Assert.DoesNotContain(log.Lines, l => !l.Contains("identify") && !l.Contains("closed"));
    }
}
