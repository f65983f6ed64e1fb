using System.Diagnostics;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Hosting;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.Benchmarks;

/// <summary>
/// One Yamux stream over Noise over loopback TCP between two hosts in this process, bytes discarded by the
/// receiver: a long steady run to profile the libp2p data path (<c>InferenceMesh.Benchmarks p2p-throughput [MiB]</c>).
/// </summary>
public static class Libp2pThroughput
{
    private const string Discard = "/inferencemesh/bench/discard/1.0.0";

    public static async Task<int> RunAsync(int mebibytes, int windowKiB, int frameKiB)
    {
        var yamux = new InferenceMesh.P2P.Muxing.YamuxOptions { MaxStreamWindow = windowKiB << 10, MaxFrameSize = frameKiB << 10, StreamWriteBuffer = Math.Max(windowKiB, 1024) << 10 };
        await using var server = new Libp2pHost(new Libp2pHostOptions { Identity = Ed25519KeyPair.Generate(), Yamux = yamux });
        await using var client = new Libp2pHost(new Libp2pHostOptions { Identity = Ed25519KeyPair.Generate(), Yamux = yamux });
        server.SetHandler(Discard, async (stream, ct) =>
        {
            while (true)
            {
                var read = await stream.Input.ReadAsync(ct);
                stream.Input.AdvanceTo(read.Buffer.End);
                if (read.IsCompleted) break;
            }
            await stream.Output.CompleteAsync();
        });
        await server.StartAsync([Multiaddr.Parse("/ip4/127.0.0.1/tcp/0")]);
        await client.StartAsync([]);
        var chunk = new byte[65536];
        new Random(1).NextBytes(chunk);
        await using var s = await client.NewStreamAsync(server.ListenAddresses[0].WithPeerId(server.PeerId), [Discard]);
        var watch = Stopwatch.StartNew();
        for (long sent = 0; sent < (long)mebibytes << 20; sent += chunk.Length)
            await s.Output.WriteAsync(chunk);
        await s.Output.CompleteAsync();
        while (!(await s.Input.ReadAsync()).IsCompleted) { }
        Console.WriteLine($"window {windowKiB} KiB, frames {frameKiB} KiB: {mebibytes} MiB in {watch.Elapsed.TotalSeconds:F2} s: {((long)mebibytes << 20) / 1e6 / watch.Elapsed.TotalSeconds:F0} MB/s");
        return 0;
    }
}
