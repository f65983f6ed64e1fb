using System.Buffers;
using InferenceMesh.Core;
using InferenceMesh.P2P.Encoding;

namespace InferenceMesh.P2P.Dht;

/// <summary>The wire frame of kad-dht: unsigned-varint length, then the protobuf message.</summary>
public static class KadFraming
{
    /// <summary>Writes one framed message.</summary>
    public static void Write(IBufferWriter<byte> output, KadMessage message)
    {
        var w = new ProtoWriter();
        message.WriteTo(w);
        UnsignedVarint.Write(output, (ulong)w.Length);
        output.Write(w.WrittenSpan);
    }

    /// <summary>One framed message as bytes.</summary>
    public static byte[] ToFrame(KadMessage message)
    {
        var b = new ArrayBufferWriter<byte>();
        Write(b, message);
        return b.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Cuts one frame from <paramref name="buffer"/>. Returns false (buffer unchanged) when more bytes are
    /// needed; throws <see cref="DhtException"/> (LimitExceeded) as soon as the length prefix exceeds
    /// <paramref name="maxMessageSize"/>, before any memory is taken for it. On true, <paramref name="buffer"/>
    /// is advanced past the frame.
    /// </summary>
    public static bool TryReadFrame(ref ReadOnlySequence<byte> buffer, int maxMessageSize, out ReadOnlySequence<byte> payload)
    {
        payload = default;
        var reader = new SequenceReader<byte>(buffer);
        if (!UnsignedVarint.TryRead(ref reader, out var len, why => new DhtException(DhtErrorCode.InvalidMessage, $"bad DHT frame length prefix: {why}")))
            return false;
        if (len > (ulong)maxMessageSize)
            throw new DhtException(DhtErrorCode.LimitExceeded, $"DHT message of {len} bytes exceeds {maxMessageSize}");
        if (reader.Remaining < (long)len)
            return false;
        payload = buffer.Slice(reader.Position, (long)len);
        buffer = buffer.Slice(payload.End);
        return true;
    }
}
