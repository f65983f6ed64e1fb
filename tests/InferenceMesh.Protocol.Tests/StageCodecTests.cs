using System.Buffers;
using InferenceMesh.Core;
using InferenceMesh.Protocol;
using MessagePack;

namespace InferenceMesh.Protocol.Tests;

public sealed class StageCodecTests
{
    private static readonly StageLimits Limits = new();

    private static TensorData Activation(int steps, int width, int seed = 1)
    {
        var random = new Random(seed);
        var values = new float[steps * width];
        for (var i = 0; i < values.Length; i++) values[i] = (float)random.NextDouble() - 0.5f;
        return TensorData.FromFloats([1, steps, width], values);
    }

    public static TheoryData<StageMessage> Messages() => new()
    {
        new OpenSession(7, "sess-1", new string('a', 64), new BlockRange(2, 5), 512),
        new SessionOpened(7, "sess-1"),
        new Step(42, "sess-1", 17, Activation(3, 64), []),
        new Step(43, "sess-1", 20, Activation(1, 64), [new RouteHop("12D3KooWpeer", ["/ip4/127.0.0.1/tcp/4001"], "sess-b"), new RouteHop("12D3KooWother", [], "sess-c")]),
        new Step(44, "sess-b", 20, Activation(1, 64, 2), [new RouteHop("12D3KooWother", ["/ip4/127.0.0.1/tcp/4002", "/ip6/::1/tcp/4002"], "sess-c")]),
        new StepResult(44, "sess-1", 5, Activation(1, 64, 3)),
        new StepResult(45, "sess-1", 5, Activation(2, 64, 4), new StepCommitment(2, 30, 2, new byte[32], Enumerable.Repeat((byte)7, 32).ToArray(), new byte[64])),
        new OpenSession(8, "sess-2", new string('a', 64), new BlockRange(0, 2), 64, KeepOutputs: true),
        new StepReceipt(46, "sess-1", 5, 1),
        new StepReceipt(47, "sess-1", 5, 3, new StepCommitment(2, 30, 3, new byte[32], Enumerable.Repeat((byte)9, 32).ToArray(), new byte[64])),
        new FetchOutputs(48, "sess-1", 16, 8),
        new CloseSession("sess-1"),
        new StageError(44, "sess-1", StageErrorCode.UnknownSession, "no session sess-1"),
    };

    private static byte[] Encode(StageMessage message)
    {
        var buffer = new ArrayBufferWriter<byte>();
        StageCodec.Write(buffer, message);
        return buffer.WrittenSpan.ToArray();
    }

    private static void AssertSame(StageMessage expected, StageMessage actual)
    {
        Assert.Equal(expected.GetType(), actual.GetType());
        Assert.Equal(Normalize(expected), Normalize(actual));
    }

    // Records compare lists and tensors by reference; compare their encodings instead.
    private static string Normalize(StageMessage message) => Convert.ToHexString(Encode(message));

    [Theory]
    [MemberData(nameof(Messages))]
    public void RoundTrips(StageMessage message)
    {
        var sequence = new ReadOnlySequence<byte>(Encode(message));
        Assert.True(StageCodec.TryRead(ref sequence, Limits, out var decoded));
        Assert.True(sequence.IsEmpty);
        AssertSame(message, decoded!);
    }

    [Fact]
    public void AnOpenThatDoesNotAskToKeepOutputsIsTheFrameItWasBeforeTheFieldExisted()
    {
        // A server that predates KeepOutputs reads this frame, and one that knows it reads the old frame as "do not keep".
        var plain = Encode(new OpenSession(7, "s", "m", new BlockRange(0, 2), 64));
        var reader = new MessagePackReader(plain.AsMemory(1));
        Assert.Equal(6, reader.ReadMapHeader());
        var keeping = Encode(new OpenSession(7, "s", "m", new BlockRange(0, 2), 64, KeepOutputs: true));
        Assert.Equal(7, new MessagePackReader(keeping.AsMemory(1)).ReadMapHeader());
        var sequence = new ReadOnlySequence<byte>(plain);
        Assert.True(StageCodec.TryRead(ref sequence, Limits, out var decoded));
        Assert.False(Assert.IsType<OpenSession>(decoded).KeepOutputs);
    }

    [Fact]
    public void DecodingATwoMebibyteFrameAllocatesNoPayloadSizedBuffer()
    {
        var step = new Step(9, "sess-1", 0, Activation(128, 4096), []);
        var frame = Encode(step);
        // Split the frame across segments as a pipe hands it over, so the payload is read from several buffers.
        var first = new Segment(frame.AsMemory(0, 100_000));
        var last = first.Append(frame.AsMemory(100_000, 1_000_000)).Append(frame.AsMemory(1_100_000));
        StageMessage? Decode()
        {
            var sequence = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
            Assert.True(StageCodec.TryRead(ref sequence, Limits, out var message));
            return message;
        }
        for (var warm = 0; warm < 3; warm++) ((Step)Decode()!).Activation.Dispose();
        var before = GC.GetAllocatedBytesForCurrentThread();
        var decoded = (Step)Decode()!;
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 16 * 1024, $"decoding a {frame.Length}-byte frame allocated {allocated} bytes");
        Assert.True(decoded.Activation.IsPooled);
        Assert.Equal(step.Activation.Bytes.ToArray(), decoded.Activation.Bytes.ToArray());
        decoded.Activation.Dispose();
        Assert.Throws<ObjectDisposedException>(() => decoded.Activation.Bytes);
    }

    [Fact]
    public void ActivationBytesAreCarriedAsBin()
    {
        var step = new Step(1, "s", 0, Activation(2, 8), []);
        var frame = Encode(step);
        var reader = new MessagePackReader(frame.AsMemory(UnsignedVarint.SizeOf((ulong)frame.Length)));
        var count = reader.ReadMapHeader();
        for (var i = 0; i < count; i++)
        {
            if (reader.ReadString() == "p")
            {
                Assert.Equal(MessagePackType.Binary, reader.NextMessagePackType);
                Assert.Equal(step.Activation.Bytes.ToArray(), reader.ReadBytes()!.Value.ToArray());
                return;
            }
            reader.Skip();
        }
        Assert.Fail("no payload field");
    }

    [Theory]
    [MemberData(nameof(Messages))]
    public void EveryFrameSplitAtEveryByteOffsetDecodes(StageMessage message)
    {
        var twoFrames = Encode(message).Concat(Encode(new CloseSession("after"))).ToArray();
        for (var cut = 0; cut <= twoFrames.Length; cut++)
        {
            var first = new Segment(twoFrames.AsMemory(0, cut));
            var last = first.Append(twoFrames.AsMemory(cut));
            var sequence = new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
            var decoded = new List<StageMessage>();
            while (StageCodec.TryRead(ref sequence, Limits, out var m)) decoded.Add(m!);
            Assert.Equal(2, decoded.Count);
            AssertSame(message, decoded[0]);
            Assert.True(sequence.IsEmpty);
        }
    }

    [Fact]
    public void IncompleteFramesConsumeNothing()
    {
        var frame = Encode(new Step(1, "s", 0, Activation(4, 16), []));
        for (var length = 0; length < frame.Length; length++)
        {
            var sequence = new ReadOnlySequence<byte>(frame, 0, length);
            Assert.False(StageCodec.TryRead(ref sequence, Limits, out _));
            Assert.Equal(length, sequence.Length);
        }
    }

    [Fact]
    public void OversizedFrameIsRefusedFromItsLengthAlone()
    {
        var header = new byte[UnsignedVarint.MaxBytes];
        var written = UnsignedVarint.Write(header, 1UL << 40);
        var sequence = new ReadOnlySequence<byte>(header, 0, written);
        var error = Assert.Throws<MeshException>(() => StageCodec.TryRead(ref sequence, Limits, out _));
        Assert.Equal(MeshErrorCode.LimitExceeded, error.Code);
    }

    [Fact]
    public void SenderRefusesFramesOverTheLimit()
    {
        var error = Assert.Throws<MeshException>(() => StageCodec.Write(new ArrayBufferWriter<byte>(), new Step(1, "s", 0, Activation(64, 64), []), new StageLimits(MaxFrameBytes: 1024)));
        Assert.Equal(MeshErrorCode.LimitExceeded, error.Code);
    }

    [Fact]
    public void ACommitmentCostsUnder150BytesAndAResultWithoutOneStillReads()
    {
        var bare = new StepResult(1, new string('s', 34), 5, Activation(1, 1024));
        var signed = bare with { Commitment = new StepCommitment(0, 300, 1, new byte[32], new byte[32], new byte[64]) };
        Assert.InRange(Encode(signed).Length - Encode(bare).Length, 128, 150);
        var sequence = new ReadOnlySequence<byte>(Encode(bare));
        Assert.True(StageCodec.TryRead(ref sequence, Limits, out var decoded));
        Assert.Null(((StepResult)decoded!).Commitment);
    }

    public static TheoryData<string, byte[]> MalformedBodies() => new()
    {
        { "not a map", Body((ref MessagePackWriter w) => w.Write(5)) },
        { "no type", Body((ref MessagePackWriter w) => { w.WriteMapHeader(1); w.Write("s"); w.Write("x"); }) },
        { "unknown type", Body((ref MessagePackWriter w) => { w.WriteMapHeader(1); w.Write("t"); w.Write("teleport"); }) },
        { "step without payload", Body((ref MessagePackWriter w) => { w.WriteMapHeader(4); w.Write("t"); w.Write("step"); w.Write("s"); w.Write("x"); w.Write("pos"); w.Write(0); w.Write("dtype"); w.Write(1); }) },
        { "payload shorter than shape", StepBody([1, 2, 4], 12) },
        { "negative dimension", StepBody([1, -2, 4], 0) },
        { "rank over limit", StepBody([1, 1, 1, 1, 1, 1], 4) },
        { "map count beyond the body", Body((ref MessagePackWriter w) => w.WriteMapHeader(1000)) },
        { "commitment with a short signature", Body((ref MessagePackWriter w) =>
            {
                w.WriteMapHeader(6); w.Write("t"); w.Write("result"); w.Write("s"); w.Write("x"); w.Write("end"); w.Write(1);
                w.Write("c"); w.WriteArrayHeader(6); w.Write(0); w.Write(0); w.Write(1); w.Write(new byte[32]); w.Write(new byte[32]); w.Write(new byte[63]);
                w.Write("dtype"); w.Write(1); w.Write("shape"); w.WriteArrayHeader(0);
            }) },
        { "trailing bytes", Body((ref MessagePackWriter w) => { w.WriteMapHeader(2); w.Write("t"); w.Write("close"); w.Write("s"); w.Write("x"); w.Write(1); }) },
    };

    [Theory]
    [MemberData(nameof(MalformedBodies))]
    public void MalformedBodiesAreTypedErrors(string what, byte[] frame)
    {
        var sequence = new ReadOnlySequence<byte>(frame);
        var error = Assert.Throws<MeshException>(() => StageCodec.TryRead(ref sequence, Limits, out _));
        Assert.True(error.Code == MeshErrorCode.ProtocolViolation, $"{what}: {error.Code} {error.Message}");
    }

    [Fact]
    public void SeededRandomBytesNeverEscapeAsUntypedExceptions()
    {
        var random = new Random(2024);
        var valid = Encode(new Step(9, "session", 3, Activation(2, 8), [new RouteHop("p", ["/ip4/1.2.3.4/tcp/1"], "q")]));
        for (var trial = 0; trial < 5000; trial++)
        {
            byte[] frame;
            if (trial % 2 == 0)
            {
                frame = (byte[])valid.Clone();
                for (var flips = random.Next(1, 4); flips > 0; flips--) frame[random.Next(frame.Length)] = (byte)random.Next(256);
            }
            else
            {
                frame = new byte[random.Next(1, 64)];
                random.NextBytes(frame);
            }
            var sequence = new ReadOnlySequence<byte>(frame);
            try
            {
                while (StageCodec.TryRead(ref sequence, new StageLimits(MaxFrameBytes: 4096), out _)) { }
            }
            catch (MeshException e)
            {
                Assert.True(e.Code is MeshErrorCode.ProtocolViolation or MeshErrorCode.LimitExceeded, e.Message);
            }
        }
    }

    private static byte[] Body(BodyWriter write)
    {
        var body = new ArrayBufferWriter<byte>();
        var writer = new MessagePackWriter(body);
        write(ref writer);
        writer.Flush();
        var frame = new ArrayBufferWriter<byte>();
        UnsignedVarint.Write(frame, (ulong)body.WrittenCount);
        frame.Write(body.WrittenSpan);
        return frame.WrittenSpan.ToArray();
    }

    private static byte[] StepBody(long[] shape, int payloadBytes) => Body((ref MessagePackWriter w) =>
    {
        w.WriteMapHeader(6);
        w.Write("t"); w.Write("step"); w.Write("s"); w.Write("x"); w.Write("pos"); w.Write(0); w.Write("dtype"); w.Write(1);
        w.Write("shape"); w.WriteArrayHeader(shape.Length);
        foreach (var d in shape) w.Write(d);
        w.Write("p"); w.Write(new byte[payloadBytes]);
    });

    public delegate void BodyWriter(ref MessagePackWriter writer);

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory) => Memory = memory;

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}
