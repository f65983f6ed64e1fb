using System.Buffers;

namespace InferenceMesh.P2P.Encoding;

/// <summary>
/// The multiformats unsigned varint (LEB128, at most 9 bytes, minimal encoding), as used by
/// multiaddr, multihash, multistream-select and length-prefixed libp2p messages.
/// </summary>
public static class Varint
{
    /// <summary>Longest encoding in bytes (63 bits of value).</summary>
    public const int MaxLength = 9;

    /// <summary>Bytes needed to encode <paramref name="value"/>.</summary>
    public static int SizeOf(ulong value)
    {
        var n = 1;
        while (value >= 0x80) { value >>= 7; n++; }
        return n;
    }

    /// <summary>Writes <paramref name="value"/> and returns the bytes written.</summary>
    public static int Write(Span<byte> dest, ulong value)
    {
        if (value > long.MaxValue)
            throw new P2PException(P2PErrorCode.LimitExceeded, "varint value above 2^63-1");
        var i = 0;
        while (value >= 0x80)
        {
            dest[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        dest[i++] = (byte)value;
        return i;
    }

    /// <summary>Writes <paramref name="value"/> to a buffer writer.</summary>
    public static void Write(IBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(MaxLength);
        writer.Advance(Write(span, value));
    }

    /// <summary>
    /// Reads a varint from a span. Returns false when the span ends before the varint does;
    /// throws on an over-long or non-minimal encoding.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int length)
    {
        value = 0;
        for (var i = 0; i < source.Length; i++)
        {
            if (i >= MaxLength)
                throw new P2PException(P2PErrorCode.InvalidEncoding, "varint longer than 9 bytes");
            var b = source[i];
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                if (b == 0 && i > 0)
                    throw new P2PException(P2PErrorCode.InvalidEncoding, "varint not minimally encoded");
                length = i + 1;
                return true;
            }
        }
        if (source.Length >= MaxLength)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "varint longer than 9 bytes");
        length = 0;
        return false;
    }

    /// <summary>Reads a varint from a sequence reader; false (reader unmoved) when more bytes are needed.</summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out ulong value)
    {
        Span<byte> tmp = stackalloc byte[MaxLength];
        var n = (int)Math.Min(MaxLength, reader.Remaining);
        reader.TryCopyTo(tmp[..n]);
        if (!TryRead(tmp[..n], out value, out var len))
            return false;
        reader.Advance(len);
        return true;
    }

    /// <summary>Reads a varint from the start of a span, throwing if it is truncated.</summary>
    public static ulong Read(ReadOnlySpan<byte> source, out int length)
    {
        if (!TryRead(source, out var v, out length))
            throw new P2PException(P2PErrorCode.InvalidEncoding, "truncated varint");
        return v;
    }

    /// <summary>
    /// Protobuf flavour: up to 10 bytes and non-minimal encodings accepted (protobuf allows them);
    /// throws when truncated.
    /// </summary>
    internal static ulong TryReadProto(ReadOnlySpan<byte> source, out int length)
    {
        ulong value = 0;
        for (var i = 0; i < source.Length && i < 10; i++)
        {
            var b = source[i];
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
            {
                length = i + 1;
                return value;
            }
        }
        throw new P2PException(P2PErrorCode.InvalidEncoding, "truncated or over-long protobuf varint");
    }
}
