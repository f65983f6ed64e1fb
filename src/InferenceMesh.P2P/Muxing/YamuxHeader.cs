using System.Buffers.Binary;

namespace InferenceMesh.P2P.Muxing;

/// <summary>A 12-byte Yamux header: version, type, flags, stream id, length — all big-endian.</summary>
public readonly record struct YamuxHeader(byte Version, YamuxFrameType Type, YamuxFlags Flags, uint StreamId, uint Length)
{
    /// <summary>Encoded header size in bytes.</summary>
    public const int Size = 12;

    /// <summary>Writes the 12 header bytes.</summary>
    public void Write(Span<byte> dest)
    {
        dest[0] = Version;
        dest[1] = (byte)Type;
        BinaryPrimitives.WriteUInt16BigEndian(dest[2..], (ushort)Flags);
        BinaryPrimitives.WriteUInt32BigEndian(dest[4..], StreamId);
        BinaryPrimitives.WriteUInt32BigEndian(dest[8..], Length);
    }

    /// <summary>Reads 12 header bytes without validating them.</summary>
    public static YamuxHeader Read(ReadOnlySpan<byte> src) => new(
        src[0], (YamuxFrameType)src[1], (YamuxFlags)BinaryPrimitives.ReadUInt16BigEndian(src[2..]),
        BinaryPrimitives.ReadUInt32BigEndian(src[4..]), BinaryPrimitives.ReadUInt32BigEndian(src[8..]));
}
