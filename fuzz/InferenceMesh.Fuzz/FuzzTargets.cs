using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using InferenceMesh.Core;
using InferenceMesh.Onnx;
using InferenceMesh.Onnx.Import;
using InferenceMesh.Onnx.Import.HuggingFace;
using InferenceMesh.Onnx.Split;
using InferenceMesh.P2P;
using InferenceMesh.P2P.Dht;
using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;
using InferenceMesh.P2P.Muxing;
using InferenceMesh.P2P.Protocols;
using InferenceMesh.P2P.Security;
using InferenceMesh.Protocol;

namespace InferenceMesh.Fuzz;

/// <summary>The fuzz targets, one per parser that reads bytes from a peer or a file.</summary>
public static class FuzzTargets
{
    /// <summary>Longest a target may take on one input before it counts as a hang.</summary>
    public static readonly TimeSpan HangTimeout = TimeSpan.FromSeconds(5);

    private static readonly string Scratch = Directory.CreateTempSubdirectory("inferencemesh-fuzz-").FullName;

    /// <summary>Every target, by name.</summary>
    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        new("multistream", Multistream),
        new("noise", NoiseHandshake),
        new("yamux", Yamux),
        new("identify", bytes => Typed(() => IdentifyCodec.Decode(bytes))),
        new("kad", bytes => Typed(() => KadMessage.Decode(bytes))),
        new("span-record", SpanRecord),
        new("stage-frame", StageFrames),
        new("multiaddr", Multiaddrs),
        new("peerid-cid", PeerIdText),
        new("manifest", bytes => Typed(() => Manifest.Load(WriteFile(Manifest.FileName, bytes), verifyFiles: false))),
        new("llama2c", bytes => Typed(() => Llama2cCheckpoint.Read(Path.Combine(WriteFile("model.bin", bytes), "model.bin")))),
        new("safetensors", bytes => Typed(() => SafetensorsFile.Open(Path.Combine(WriteFile("model.safetensors", bytes), "model.safetensors")).Dispose())),
        new("onnx-split", OnnxSplit),
    ];

    /// <summary>The target named <paramref name="name"/>; throws <see cref="ArgumentException"/> naming the known ones.</summary>
    public static FuzzTarget Get(string name) =>
        All.FirstOrDefault(t => t.Name == name) ?? throw new ArgumentException($"no fuzz target '{name}'; known: {string.Join(", ", All.Select(t => t.Name))}");

    // Typed errors are the parsers' contract for bad input: they end the run quietly.
    private static void Typed(Action parse)
    {
        try
        {
            parse();
        }
        catch (MeshException)
        {
        }
    }

    private static string WriteFile(string name, byte[] bytes)
    {
        File.WriteAllBytes(Path.Combine(Scratch, name), bytes);
        return Scratch;
    }

    private static void Multistream(byte[] bytes) => Typed(() =>
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        while (P2P.Protocols.Multistream.TryParseMessage(ref buffer, out _))
        {
        }
    });

    // A Noise handshake frame (2-byte length) whose body is a remote static key (32 bytes) and the signed payload.
    private static void NoiseHandshake(byte[] bytes) => Typed(() =>
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        if (bytes.Length < 2) return;
        var length = Noise.ReadU16(buffer);
        var body = bytes.AsSpan(2, Math.Min(length, bytes.Length - 2));
        if (body.Length < Noise.DhLength) return;
        Noise.DecodeAndVerify(body[Noise.DhLength..], body[..Noise.DhLength]);
    });

    // The bytes arrive as the remote half of a Yamux session; every stream it opens is read to its end.
    private static void Yamux(byte[] bytes)
    {
        var incoming = new Pipe();
        var outgoing = new Pipe();
        var session = new YamuxSession(new DuplexPipe(incoming.Reader, outgoing.Writer), isClient: false);
        var run = Task.Run(async () =>
        {
            session.Start();
            var drain = Task.Run(async () =>
            {
                while (true)
                {
                    var r = await outgoing.Reader.ReadAsync();
                    outgoing.Reader.AdvanceTo(r.Buffer.End);
                    if (r.IsCompleted || r.IsCanceled) return;
                }
            });
            var readers = new List<Task>();
            var accepting = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        var stream = await session.AcceptStreamAsync();
                        readers.Add(Task.Run(async () =>
                        {
                            try
                            {
                                while (true)
                                {
                                    var r = await stream.Input.ReadAsync();
                                    stream.Input.AdvanceTo(r.Buffer.End);
                                    if (r.IsCompleted) break;
                                }
                            }
                            catch (MeshException)
                            {
                            }
                        }));
                    }
                }
                catch (MeshException)
                {
                }
            });
            await incoming.Writer.WriteAsync(bytes);
            await incoming.Writer.CompleteAsync();
            await session.Completion.ContinueWith(_ => { }, TaskScheduler.Default);
            await session.DisposeAsync();
            await accepting;
            await Task.WhenAll(readers);
            await outgoing.Reader.CompleteAsync();
            await drain.ContinueWith(_ => { }, TaskScheduler.Default);
        });
        if (!run.Wait(HangTimeout))
            throw new TimeoutException($"the Yamux session did not end within {HangTimeout.TotalSeconds} s of its input's end");
        run.GetAwaiter().GetResult();
    }

    private sealed class DuplexPipe(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input => input;
        public PipeWriter Output => output;
    }

    private static readonly byte[] SpanKey = SpanRecordValidator.KeyFor("fuzz-model", 0);

    private static void SpanRecord(byte[] bytes) => Typed(() =>
    {
        var validator = new SpanRecordValidator();
        validator.ReadEntries(SpanKey, bytes);
        validator.Validate(SpanKey, bytes);
        validator.Merge(SpanKey, bytes, bytes);
    });

    private static void StageFrames(byte[] bytes) => Typed(() =>
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var limits = new StageLimits(MaxFrameBytes: 1 << 20);
        while (StageCodec.TryRead(ref buffer, limits, out _))
        {
        }
    });

    private static void Multiaddrs(byte[] bytes)
    {
        Typed(() => Multiaddr.FromBytes(bytes).ToString());
        Typed(() =>
        {
            if (Multiaddr.TryParse(Encoding.UTF8.GetString(bytes), out var parsed))
                Multiaddr.FromBytes(parsed!.ToBytes());
        });
    }

    private static void PeerIdText(byte[] bytes)
    {
        var text = Encoding.UTF8.GetString(bytes);
        Typed(() => PeerId.Parse(text).ToString());
        Typed(() => Cid.Multihash(text));
        Typed(() => PeerId.FromBytes(bytes));
    }

    private static void OnnxSplit(byte[] bytes) => Typed(() =>
    {
        var model = OnnxModelFile.Parse(bytes, "fuzz input");
        var analysis = new GraphAnalysis(model);
        var blocks = analysis.BlockCount;
        IReadOnlyList<BlockRange> ranges = blocks > 1 ? [new BlockRange(0, 1), new BlockRange(1, blocks)] : [new BlockRange(0, blocks)];
        GraphSplitter.Split(model, analysis, ranges);
    });
}
