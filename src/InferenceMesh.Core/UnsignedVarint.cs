using System.Buffers;

namespace InferenceMesh.Core;

/// <summary>
/// The multiformats unsigned varint (LEB128, at most 9 bytes, minimally encoded) used to prefix frame
/// lengths on every libp2p and mesh stream, and inside multiaddrs, multihashes and CIDs.
/// </summary>
public static class UnsignedVarint
{
    /// <summary>Longest encoding in bytes (63 bits of value).</summary>
    public const int MaxBytes = 9;

    /// <summary>Bytes needed to encode <paramref name="value"/>.</summary>
    public static int SizeOf(ulong value)
    {
        var size = 1;
        while (value >= 0x80) { value >>= 7; size++; }
        return size;
    }

    /// <summary>Writes <paramref name="value"/> (below 2⁶³) and returns the bytes used.</summary>
    public static int Write(Span<byte> destination, ulong value)
    {
        if (value >= 1UL << 63)
            throw new MeshException(MeshErrorCode.InvalidArgument, $"{value} does not fit a 9-byte varint");
        var i = 0;
        while (value >= 0x80)
        {
            destination[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        destination[i++] = (byte)value;
        return i;
    }

    /// <summary>Writes <paramref name="value"/> (below 2⁶³) to a buffer writer.</summary>
    public static void Write(IBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(MaxBytes);
        writer.Advance(Write(span, value));
    }

    /// <summary>
    /// Reads a varint from the front of <paramref name="source"/>: true with the value and its length when
    /// complete, false when the span ends first. Over 9 bytes or not minimally encoded is a
    /// <see cref="MeshErrorCode.ProtocolViolation"/>.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int length) =>
        Decode(source, out value, out length) switch
        {
            Status.Complete => true,
            Status.Incomplete => false,
            var status => throw ProtocolViolation(Reason(status)),
        };

    /// <summary>
    /// Decodes a whole varint at the front of <paramref name="source"/>: false when it is truncated, over 9 bytes
    /// or not minimally encoded. Never throws, for parsers of complete buffers that report their own typed error.
    /// </summary>
    public static bool TryDecode(ReadOnlySpan<byte> source, out ulong value, out int length) =>
        Decode(source, out value, out length) == Status.Complete;

    /// <summary>Reads a varint from a sequence: true when complete (the reader moves past it); false when more bytes are needed (the reader stays).</summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out ulong value) =>
        TryRead(ref reader, out value, ProtocolViolation);

    /// <summary>
    /// <see cref="TryRead(ref SequenceReader{byte}, out ulong)"/>, throwing what <paramref name="malformed"/> makes of the
    /// reason when the varint is over 9 bytes or not minimal, so each protocol layer reports its own typed error.
    /// </summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out ulong value, Func<string, Exception> malformed)
    {
        Span<byte> head = stackalloc byte[MaxBytes];
        var available = (int)Math.Min(MaxBytes, reader.Remaining);
        reader.TryCopyTo(head[..available]);
        switch (Decode(head[..available], out value, out var length))
        {
            case Status.Complete:
                reader.Advance(length);
                return true;
            case Status.Incomplete:
                return false;
            case var status:
                throw malformed(Reason(status));
        }
    }

    private enum Status { Complete, Incomplete, Overlong, NotMinimal }

    private static MeshException ProtocolViolation(string reason) => new(MeshErrorCode.ProtocolViolation, reason);

    private static string Reason(Status status) =>
        status == Status.Overlong ? $"varint is longer than {MaxBytes} bytes" : "varint is not minimally encoded";

    private static Status Decode(ReadOnlySpan<byte> source, out ulong value, out int length)
    {
        value = 0;
        length = 0;
        for (var i = 0; i < source.Length; i++)
        {
            if (i >= MaxBytes)
                return Status.Overlong;
            var b = source[i];
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                    return Status.NotMinimal;
                length = i + 1;
                return Status.Complete;
            }
        }
        return source.Length >= MaxBytes ? Status.Overlong : Status.Incomplete;
    }
}
