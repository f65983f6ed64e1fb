using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Google.Protobuf;
using InferenceMesh.Core;
using InferenceMesh.Onnx.Import;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Security;
using InferenceMesh.Protocol;

namespace InferenceMesh.Fuzz;

/// <summary>
/// Writes the seed corpora under <c>fuzz/corpus/&lt;target&gt;/</c>: each seed is what this code base's own
/// encoders put on the wire or on disk (a Yamux session's real output, a signed span record, a tiny model), so
/// fuzzing starts from valid input and mutates outward. Kept small: the whole corpus is a few hundred KiB.
/// </summary>
public static class SeedCorpus
{
    public static void Write(string root)
    {
        using var key = Ed25519KeyPair.FromSeed(Enumerable.Range(1, 32).Select(i => (byte)i).ToArray());
        var peer = key.PeerId;
        var addr = Multiaddr.Parse($"/ip4/127.0.0.1/tcp/4001/p2p/{peer}");
        void Seed(string target, string name, byte[] bytes)
        {
            var dir = Path.Combine(root, target);
            Directory.CreateDirectory(dir);
            File.WriteAllBytes(Path.Combine(dir, name), bytes);
        }

        Seed("multistream", "select", [.. Line("/multistream/1.0.0"), .. Line("/noise"), .. Line("/yamux/1.0.0")]);
        Seed("multistream", "na", [.. Line("/multistream/1.0.0"), .. Line("na")]);
        Seed("multistream", "ls", [.. Line("ls")]);

        using (var noise = new NoiseIdentity(key))
        {
            var payload = new ProtoWriter();
            payload.WriteBytes(1, key.PublicKeyProtobuf);
            payload.WriteBytes(2, noise.Signature);
            var ext = new ProtoWriter();
            ext.WriteString(2, YamuxSession.ProtocolId);
            payload.WriteBytes(4, ext.ToArray());
            byte[] body = [.. noise.Static.PublicKey, .. payload.ToArray()];
            Seed("noise", "payload-with-muxers", [(byte)(body.Length >> 8), (byte)body.Length, .. body]);
        }

        Seed("yamux", "open-write-close", YamuxTraffic(async s =>
        {
            var stream = await s.OpenStreamAsync();
            await stream.Output.WriteAsync(Encoding.ASCII.GetBytes("hello over yamux"));
            await stream.Output.CompleteAsync();
        }));
        Seed("yamux", "two-streams-and-reset", YamuxTraffic(async s =>
        {
            var a = await s.OpenStreamAsync();
            var b = await s.OpenStreamAsync();
            await a.Output.WriteAsync(new byte[300]);
            b.Reset();
            await a.Output.CompleteAsync();
        }));

        Seed("identify", "full", IdentifyCodec.Encode(new IdentifyInfo
        {
            ProtocolVersion = "ipfs/0.1.0",
            AgentVersion = "inferencemesh/0.1.0",
            PublicKey = key.PublicKeyProtobuf,
            ListenAddresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/4001")],
            ObservedAddress = Multiaddr.Parse("/ip4/10.0.0.1/tcp/5555"),
            Protocols = ["/ipfs/id/1.0.0", "/ipfs/ping/1.0.0", "/inferencemesh/stage/1.0.0"],
        }));

        var kadPeer = new KadPeer(peer, [Multiaddr.Parse("/ip4/127.0.0.1/tcp/4001")], KadConnectionType.Connected);
        Seed("kad", "find-node", new KadMessage { Type = KadMessageType.FindNode, Key = peer.ToBytes(), CloserPeers = [kadPeer] }.Encode());
        Seed("kad", "put-value", new KadMessage { Type = KadMessageType.PutValue, Key = "/mesh/x"u8.ToArray(), Record = new KadRecord("/mesh/x"u8.ToArray(), [1, 2, 3], "2026-11-30T00:00:00Z") }.Encode());
        Seed("kad", "providers", new KadMessage { Type = KadMessageType.GetProviders, Key = [0x12, 0x20, .. new byte[32]], ProviderPeers = [kadPeer] }.Encode());

        var info = new ServerInfo
        {
            Peer = peer,
            Addresses = [Multiaddr.Parse("/ip4/127.0.0.1/tcp/4001")],
            ModelId = "fuzz-model",
            Block = 0,
            Span = new BlockRange(0, 2),
            Throughput = 12.5,
            FreeCacheTokens = 4096,
            IssuedAt = new DateTimeOffset(2026, 11, 30, 0, 0, 0, TimeSpan.Zero),
            ExpiresAt = new DateTimeOffset(2026, 11, 30, 0, 2, 0, TimeSpan.Zero),
        };
        Seed("span-record", "one-entry", SpanRecordValidator.EncodeValue([SpanRecordValidator.Sign(info, key)]));

        var frames = new ArrayBufferWriter<byte>();
        StageCodec.Write(frames, new OpenSession(1, "s", "fuzz-model", new BlockRange(0, 2), 64));
        StageCodec.Write(frames, new Step(2, "s", 0, TensorData.FromFloats([1, 1, 4], [0.5f, -1f, 2f, 0f]), [new RouteHop(peer.ToString(), [addr.ToString()], "s")]));
        StageCodec.Write(frames, new CloseSession("s"));
        Seed("stage-frame", "open-step-close", frames.WrittenSpan.ToArray());

        Seed("multiaddr", "tcp-p2p-binary", addr.ToBytes());
        Seed("multiaddr", "tcp-p2p-text", Encoding.UTF8.GetBytes(addr.ToString()));
        Seed("multiaddr", "dns-text", "/dns4/example.com/tcp/443/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"u8.ToArray());
        Seed("multiaddr", "ip6-memory", "/ip6/::1/tcp/0"u8.ToArray());

        Seed("peerid-cid", "base58", Encoding.UTF8.GetBytes(peer.ToString()));
        Seed("peerid-cid", "cidv1", Encoding.UTF8.GetBytes("b" + Base32.Encode([0x01, 0x72, .. peer.ToBytes()])));
        Seed("peerid-cid", "cidv0", "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"u8.ToArray());

        var config = new ModelConfig(8, 16, 1, 2, 2, 16, 8, 1e-5f, 10000f);
        var manifest = new Manifest(1, "tiny", 1, config, new string('0', 64), "tokenizer.bin",
        [
            new StageDescriptor(StageKind.Blocks, new BlockRange(0, 1), "blocks_0_1.onnx", new string('a', 64), "hidden_in", "hidden_out",
                [new TensorInfo("hidden_in", DType.Float32, ["batch", "seq", "8"])], [new TensorInfo("hidden_out", DType.Float32, ["batch", "seq", "8"])],
                ["attention_mask"], []),
        ]);
        var manifestDir = Directory.CreateTempSubdirectory("fuzz-seed-").FullName;
        manifest.Save(manifestDir);
        Seed("manifest", "one-stage", File.ReadAllBytes(Path.Combine(manifestDir, Manifest.FileName)));
        Directory.Delete(manifestDir, true);

        // llama2.c: seven int32 (dim, hidden, layers, heads, kv heads, vocab, seq) then the float arrays.
        var floats = 16 * 8 + 8 + 2 * 64 + 2 * 64 + 8 + 3 * 128 + 8 + 8 * 4;
        var checkpoint = new byte[28 + floats * 4];
        int[] header = [8, 16, 1, 2, 2, 16, 8];
        Buffer.BlockCopy(header, 0, checkpoint, 0, 28);
        Seed("llama2c", "tiny", checkpoint);

        var json = """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[2],"data_offsets":[16,20]}}"""u8.ToArray();
        Seed("safetensors", "two-tensors", [.. BitConverter.GetBytes((long)json.Length), .. json, .. new byte[20]]);

        var tiny = LlamaOnnxBuilder.Build(LlamaWeights.Synthetic(new ModelConfig(8, 16, 2, 2, 2, 16, 8, 1e-5f, 10000f), 1), "tiny");
        Seed("onnx-split", "tiny-llama", tiny.ToByteArray());
    }

    private static byte[] Line(string text)
    {
        var body = Encoding.UTF8.GetBytes(text + "\n");
        var length = new byte[UnsignedVarint.SizeOf((ulong)body.Length)];
        UnsignedVarint.Write(length, (ulong)body.Length);
        return [.. length, .. body];
    }

    /// <summary>The bytes a client-side Yamux session writes while <paramref name="script"/> runs: real traffic for the server-side target.</summary>
    private static byte[] YamuxTraffic(Func<YamuxSession, Task> script)
    {
        var toRemote = new Pipe();
        var fromRemote = new Pipe();
        var session = new YamuxSession(new Duplex(fromRemote.Reader, toRemote.Writer), isClient: true, new YamuxOptions { MaxUnackedOutboundStreams = 16 });
        session.Start();
        script(session).GetAwaiter().GetResult();
        session.DisposeAsync().AsTask().GetAwaiter().GetResult();
        var captured = new MemoryStream();
        while (toRemote.Reader.TryRead(out var r))
        {
            foreach (var segment in r.Buffer) captured.Write(segment.Span);
            toRemote.Reader.AdvanceTo(r.Buffer.End);
            if (r.IsCompleted) break;
        }
        return captured.ToArray();
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }
}
