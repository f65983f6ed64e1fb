using System.Buffers;
using InferenceMesh.Core;

namespace InferenceMesh.P2P.Encoding;

/// <summary>
/// The multiformats unsigned varint (LEB128, at most 9 bytes, minimal encoding), as used by
/// multiaddr, multihash, multistream-select and length-prefixed libp2p messages: <see cref="UnsignedVarint"/>
/// with libp2p's typed errors.
/// </summary>
public static class Varint
{
    /// <summary>Longest encoding in bytes (63 bits of value).</summary>
    public const int MaxLength = 9;

    /// <summary>Bytes needed to encode <paramref name="value"/>.</summary>
    public static int SizeOf(ulong value) => UnsignedVarint.SizeOf(value);

    /// <summary>Writes <paramref name="value"/> and returns the bytes written.</summary>
    public static int Write(Span<byte> dest, ulong value) => value > long.MaxValue
        ? throw new P2PException(P2PErrorCode.LimitExceeded, "varint value above 2^63-1")
        : UnsignedVarint.Write(dest, value);

    /// <summary>Writes <paramref name="value"/> to a buffer writer.</summary>
    public static void Write(IBufferWriter<byte> writer, ulong value)
    {
        var span = writer.GetSpan(MaxLength);
        writer.Advance(Write(span, value));
    }

    /// <summary>
    /// Reads a varint from a span. Returns false when the span ends before the varint does;
    /// throws <see cref="P2PException"/> (InvalidEncoding) on an over-long or non-minimal encoding.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out ulong value, out int length)
    {
        try
        {
            return UnsignedVarint.TryRead(source, out value, out length);
        }
        catch (MeshException e) when (e is not P2PException)
        {
            throw new P2PException(P2PErrorCode.InvalidEncoding, e.Message);
        }
    }

    /// <summary>Reads a varint from a sequence reader; false (reader unmoved) when more bytes are needed.</summary>
    public static bool TryRead(ref SequenceReader<byte> reader, out ulong value)
    {
        try
        {
            return UnsignedVarint.TryRead(ref reader, out value);
        }
        catch (MeshException e) when (e is not P2PException)
        {
            throw new P2PException(P2PErrorCode.InvalidEncoding, e.Message);
        }
    }

    /// <summary>Reads a varint from the start of a span, throwing if it is truncated.</summary>
    public static ulong Read(ReadOnlySpan<byte> source, out int length)
    {
        if (!TryRead(source, out var v, out length))
            throw new P2PException(P2PErrorCode.InvalidEncoding, "truncated varint");
        return v;
    }
}
