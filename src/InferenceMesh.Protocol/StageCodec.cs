using System.Buffers;
using System.Buffers.Binary;
using InferenceMesh.Core;
using MessagePack;

namespace InferenceMesh.Protocol;

/// <summary>
/// Frames stage messages: an unsigned-varint length, then a MessagePack map whose <c>t</c> field names the
/// message. Activations travel as dtype, shape and a MessagePack <c>bin</c> of raw little-endian bytes.
/// <see cref="TryRead"/> is pure: it consumes a whole frame or nothing.
/// </summary>
public static class StageCodec
{
    /// <summary>Writes one frame and returns its length in bytes, length prefix included. The activation payload is copied once, straight into <paramref name="output"/>.</summary>
    public static long Write(IBufferWriter<byte> output, StageMessage message, StageLimits? limits = null)
    {
        limits ??= new StageLimits();
        var header = new ArrayBufferWriter<byte>(256);
        var writer = new MessagePackWriter(header);
        var payload = WriteFields(ref writer, message);
        writer.Flush();
        // MessagePackWriter.WriteBinHeader reserves room for the whole payload in the header buffer; the
        // payload goes straight to the output instead, so the bin header is written by hand.
        if (payload is not null) WriteBinHeader(header, payload.Value.Length);
        var bodyLength = (long)header.WrittenCount + (payload?.Length ?? 0);
        if (bodyLength > limits.MaxFrameBytes)
            throw new MeshException(MeshErrorCode.LimitExceeded, $"{message.Kind} frame of {bodyLength} bytes exceeds the {limits.MaxFrameBytes}-byte limit");
        UnsignedVarint.Write(output, (ulong)bodyLength);
        output.Write(header.WrittenSpan);
        if (payload is not null) output.Write(payload.Value.Span);
        return UnsignedVarint.SizeOf((ulong)bodyLength) + bodyLength;
    }

    /// <summary>
    /// Reads one frame from the front of <paramref name="buffer"/>: true and the message when a whole frame is
    /// there (the buffer is advanced past it); false when more bytes are needed (the buffer is untouched).
    /// A frame over the limit, or a body that is not a valid message, throws <see cref="MeshException"/>.
    /// A step's or result's activation is copied once from <paramref name="buffer"/> into a pooled tensor that the caller
    /// owns (<see cref="TensorData.Dispose"/> returns it; a tensor never disposed is left to the collector).
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, StageLimits limits, out StageMessage? message)
    {
        message = null;
        var reader = new SequenceReader<byte>(buffer);
        if (!UnsignedVarint.TryRead(ref reader, out var length)) return false;
        if (length > (ulong)limits.MaxFrameBytes)
            throw new MeshException(MeshErrorCode.LimitExceeded, $"frame of {length} bytes exceeds the {limits.MaxFrameBytes}-byte limit");
        if (reader.Remaining < (long)length) return false;
        var body = buffer.Slice(reader.Position, (long)length);
        message = ReadBody(body, limits);
        buffer = buffer.Slice(body.End);
        return true;
    }

    private static ReadOnlyMemory<byte>? WriteFields(ref MessagePackWriter w, StageMessage message)
    {
        switch (message)
        {
            case OpenSession m:
                // "keep" is written only when set: a session without it opens with the same frame as before the field existed.
                w.WriteMapHeader(m.KeepOutputs ? 7 : 6);
                Kind(ref w, m); Field(ref w, "id", m.RequestId); Field(ref w, "s", m.SessionId); Field(ref w, "model", m.ModelId);
                w.Write("blocks"); w.WriteArrayHeader(2); w.Write(m.Blocks.Start); w.Write(m.Blocks.End);
                w.Write("max"); w.Write(m.MaxLength);
                if (m.KeepOutputs) { w.Write("keep"); w.Write(true); }
                return null;
            case SessionOpened m:
                w.WriteMapHeader(3);
                Kind(ref w, m); Field(ref w, "id", m.RequestId); Field(ref w, "s", m.SessionId);
                return null;
            case Step m:
                return WriteActivationMessage(ref w, m, m.StepId, m.SessionId, m.StartPosition, m.Activation, m.Route, null);
            case StepResult m:
                return WriteActivationMessage(ref w, m, m.StepId, m.SessionId, m.BlockEnd, m.Activation, null, m.Commitment);
            case StepReceipt m:
                w.WriteMapHeader(m.Commitment is null ? 5 : 6);
                Kind(ref w, m); Field(ref w, "id", m.StepId); Field(ref w, "s", m.SessionId);
                w.Write("end"); w.Write(m.BlockEnd);
                w.Write("n"); w.Write(m.Positions);
                if (m.Commitment is not null) WriteCommitment(ref w, m.Commitment);
                return null;
            case FetchOutputs m:
                w.WriteMapHeader(5);
                Kind(ref w, m); Field(ref w, "id", m.RequestId); Field(ref w, "s", m.SessionId);
                w.Write("pos"); w.Write(m.StartPosition);
                w.Write("n"); w.Write(m.Positions);
                return null;
            case CloseSession m:
                w.WriteMapHeader(2);
                Kind(ref w, m); Field(ref w, "s", m.SessionId);
                return null;
            case StageError m:
                w.WriteMapHeader(5);
                Kind(ref w, m); Field(ref w, "id", m.RequestId); Field(ref w, "s", m.SessionId);
                w.Write("code"); w.Write((int)m.Code);
                Field(ref w, "msg", m.Message);
                return null;
            default:
                throw new MeshException(MeshErrorCode.InvalidArgument, $"unknown stage message {message.GetType().Name}");
        }
    }

    /// <summary>Writes every field but leaves the payload's <c>p</c> key last, so the caller can append the bin itself.</summary>
    private static ReadOnlyMemory<byte> WriteActivationMessage(ref MessagePackWriter w, StageMessage m, ulong id, string session, int? position, TensorData activation, IReadOnlyList<RouteHop>? route,
        StepCommitment? commitment)
    {
        w.WriteMapHeader(6 + (position is null ? 0 : 1) + (route is null ? 0 : 1) + (commitment is null ? 0 : 1));
        Kind(ref w, m); Field(ref w, "id", id); Field(ref w, "s", session);
        if (position is not null) { w.Write(m is StepResult ? "end" : "pos"); w.Write(position.Value); }
        if (route is not null)
        {
            w.Write("route");
            w.WriteArrayHeader(route.Count);
            foreach (var hop in route)
            {
                w.WriteArrayHeader(3);
                w.Write(hop.PeerId);
                w.WriteArrayHeader(hop.Addresses.Count);
                foreach (var address in hop.Addresses) w.Write(address);
                w.Write(hop.SessionId);
            }
        }
        if (commitment is not null) WriteCommitment(ref w, commitment);
        w.Write("dtype"); w.Write((int)activation.Type);
        w.Write("shape"); w.WriteArrayHeader(activation.Shape.Length);
        foreach (var d in activation.Shape) w.Write(d);
        w.Write("p");
        return activation.Bytes;
    }

    private static void WriteCommitment(ref MessagePackWriter w, StepCommitment commitment)
    {
        w.Write("c");
        w.WriteArrayHeader(6);
        w.Write(commitment.BlockStart); w.Write(commitment.StartPosition); w.Write(commitment.Positions);
        w.Write(commitment.InputHash); w.Write(commitment.OutputHash); w.Write(commitment.Signature);
    }

    private static void WriteBinHeader(IBufferWriter<byte> output, int length)
    {
        var span = output.GetSpan(5);
        int written;
        if (length <= byte.MaxValue) { span[0] = MessagePackCode.Bin8; span[1] = (byte)length; written = 2; }
        else if (length <= ushort.MaxValue) { span[0] = MessagePackCode.Bin16; BinaryPrimitives.WriteUInt16BigEndian(span[1..], (ushort)length); written = 3; }
        else { span[0] = MessagePackCode.Bin32; BinaryPrimitives.WriteUInt32BigEndian(span[1..], (uint)length); written = 5; }
        output.Advance(written);
    }

    private static void Kind(ref MessagePackWriter w, StageMessage m) { w.Write("t"); w.Write(m.Kind); }
    private static void Field(ref MessagePackWriter w, string key, ulong value) { w.Write(key); w.Write(value); }
    private static void Field(ref MessagePackWriter w, string key, string value) { w.Write(key); w.Write(value); }

    private static StageMessage ReadBody(ReadOnlySequence<byte> body, StageLimits limits)
    {
        try
        {
            var r = new MessagePackReader(body);
            var count = r.ReadMapHeader();
            string? kind = null, session = null, model = null, text = null;
            ulong id = 0;
            int? start = null, max = null, code = null, dtype = null, blockEnd = null, positions = null;
            var keep = false;
            BlockRange? blocks = null;
            long[]? shape = null;
            ReadOnlySequence<byte>? payload = null;
            List<RouteHop>? route = null;
            StepCommitment? commitment = null;
            for (var i = 0; i < count; i++)
            {
                var key = ReadString(ref r, limits);
                switch (key)
                {
                    case "t": kind = ReadString(ref r, limits); break;
                    case "id": id = r.ReadUInt64(); break;
                    case "s": session = ReadString(ref r, limits); break;
                    case "model": model = ReadString(ref r, limits); break;
                    case "msg": text = ReadString(ref r, limits); break;
                    case "pos": start = r.ReadInt32(); break;
                    case "max": max = r.ReadInt32(); break;
                    case "end": blockEnd = r.ReadInt32(); break;
                    case "n": positions = r.ReadInt32(); break;
                    case "keep": keep = r.ReadBoolean(); break;
                    case "code": code = r.ReadInt32(); break;
                    case "dtype": dtype = r.ReadInt32(); break;
                    case "blocks":
                        if (r.ReadArrayHeader() != 2) throw Malformed("blocks must be [start, end]");
                        blocks = new BlockRange(r.ReadInt32(), r.ReadInt32());
                        break;
                    case "shape":
                        var rank = r.ReadArrayHeader();
                        if (rank > limits.MaxRank) throw Malformed($"tensor rank {rank} exceeds {limits.MaxRank}");
                        shape = new long[rank];
                        for (var d = 0; d < rank; d++) shape[d] = r.ReadInt64();
                        break;
                    case "route":
                        var hops = r.ReadArrayHeader();
                        if (hops > limits.MaxRouteHops) throw Malformed($"route of {hops} hops exceeds {limits.MaxRouteHops}");
                        route = new List<RouteHop>(hops);
                        for (var h = 0; h < hops; h++)
                        {
                            if (r.ReadArrayHeader() != 3) throw Malformed("a route hop is [peer, addresses, session]");
                            var peer = ReadString(ref r, limits);
                            var addressCount = r.ReadArrayHeader();
                            if (addressCount > 16) throw Malformed($"route hop lists {addressCount} addresses; 16 is the limit");
                            var addresses = new string[addressCount];
                            for (var a = 0; a < addressCount; a++) addresses[a] = ReadString(ref r, limits);
                            route.Add(new RouteHop(peer, addresses, ReadString(ref r, limits)));
                        }
                        break;
                    case "c":
                        if (r.ReadArrayHeader() != 6) throw Malformed("a commitment is [block start, start, positions, input hash, output hash, signature]");
                        commitment = new StepCommitment(r.ReadInt32(), r.ReadInt32(), r.ReadInt32(),
                            FixedBytes(ref r, StepCommitment.HashLength, "input hash"), FixedBytes(ref r, StepCommitment.HashLength, "output hash"),
                            FixedBytes(ref r, StepCommitment.SignatureLength, "signature"));
                        break;
                    case "p":
                        // Only a slice of the frame here; the tensor copies it once, into a pooled buffer.
                        payload = r.ReadBytes() ?? throw Malformed("payload is nil");
                        break;
                    default:
                        r.Skip();
                        break;
                }
            }
            if (!r.End) throw Malformed("bytes follow the message map");
            return kind switch
            {
                "open" => new OpenSession(id, Require(session, "s"), Require(model, "model"), blocks ?? throw Malformed("open needs blocks"), max ?? throw Malformed("open needs max"), keep),
                "opened" => new SessionOpened(id, Require(session, "s")),
                "step" => new Step(id, Require(session, "s"), start ?? throw Malformed("step needs pos"), Tensor(dtype, shape, payload), route ?? []),
                "result" => new StepResult(id, Require(session, "s"), blockEnd ?? throw Malformed("result needs end"), Tensor(dtype, shape, payload), commitment),
                "receipt" => new StepReceipt(id, Require(session, "s"), blockEnd ?? throw Malformed("receipt needs end"), positions ?? throw Malformed("receipt needs n"), commitment),
                "fetch" => new FetchOutputs(id, Require(session, "s"), start ?? throw Malformed("fetch needs pos"), positions ?? throw Malformed("fetch needs n")),
                "close" => new CloseSession(Require(session, "s")),
                "error" => new StageError(id, session ?? "", code is { } c && Enum.IsDefined((StageErrorCode)c) ? (StageErrorCode)c : StageErrorCode.Internal, text ?? ""),
                null => throw Malformed("message has no type field 't'"),
                _ => throw Malformed($"unknown message type '{kind}'"),
            };
        }
        catch (Exception e) when (e is MessagePackSerializationException or EndOfStreamException or OverflowException or InvalidOperationException or ArgumentException)
        {
            throw Malformed($"invalid MessagePack: {e.Message}");
        }
        catch (MeshException e) when (e.Code is not MeshErrorCode.ProtocolViolation and not MeshErrorCode.LimitExceeded)
        {
            throw Malformed(e.Message);
        }
    }

    private static TensorData Tensor(int? dtype, long[]? shape, ReadOnlySequence<byte>? payload)
    {
        if (dtype is null || shape is null || payload is null) throw Malformed("activation needs dtype, shape and p");
        if (!Enum.IsDefined((DType)dtype.Value)) throw Malformed($"unknown dtype {dtype}");
        return TensorData.CopyToPooled((DType)dtype.Value, shape, payload.Value);
    }

    private static byte[] FixedBytes(ref MessagePackReader r, int length, string what)
    {
        var bytes = r.ReadBytes() ?? throw Malformed($"commitment {what} is nil");
        if (bytes.Length != length) throw Malformed($"commitment {what} is {bytes.Length} bytes, not {length}");
        return bytes.ToArray();
    }

    private static string ReadString(ref MessagePackReader r, StageLimits limits)
    {
        var value = r.ReadString() ?? throw Malformed("string is nil");
        if (value.Length > limits.MaxStringBytes) throw Malformed($"string of {value.Length} characters exceeds {limits.MaxStringBytes}");
        return value;
    }

    private static string Require(string? value, string field) => value ?? throw Malformed($"message needs field '{field}'");

    private static MeshException Malformed(string why) => new(MeshErrorCode.ProtocolViolation, $"malformed stage frame: {why}");
}
