using System.Buffers;

namespace InferenceMesh.Core;

/// <summary>
/// The multiformats unsigned varint (LEB128, at most 9 bytes, minimally encoded) used to prefix frame
/// lengths on every libp2p and mesh stream.
/// </summary>
public static class UnsignedVarint
{
    public const int MaxBytes = 9;

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

    public static void Write(IBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(MaxBytes);
        writer.Advance(Write(span, value));
    }

    /// <summary>
    /// Reads a varint: true with the value when complete; false when more bytes are needed (the reader is
    /// left where it was). A varint over 9 bytes or not minimally encoded is a <see cref="MeshErrorCode.ProtocolViolation"/>.
    /// </summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out ulong value)
    {
        value = 0;
        var start = reader.Consumed;
        for (var i = 0; i < MaxBytes; i++)
        {
            if (!reader.TryRead(out var b))
            {
                reader.Rewind(reader.Consumed - start);
                return false;
            }
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                    throw new MeshException(MeshErrorCode.ProtocolViolation, "varint is not minimally encoded");
                return true;
            }
        }
        throw new MeshException(MeshErrorCode.ProtocolViolation, $"varint is longer than {MaxBytes} bytes");
    }
}
