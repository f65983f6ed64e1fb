using System.Buffers.Binary;

namespace InferenceMesh.P2P.Muxing;

/// <summary>Yamux frame types (hashicorp/yamux spec).</summary>
public enum YamuxFrameType : byte
{
    Data = 0,
    WindowUpdate = 1,
    Ping = 2,
    GoAway = 3,
}

/// <summary>Yamux header flags.</summary>
[Flags]
public enum YamuxFlags : ushort
{
    None = 0,
    Syn = 1,
    Ack = 2,
    Fin = 4,
    Rst = 8,
}

/// <summary>GoAway error codes.</summary>
public enum YamuxGoAwayCode : uint
{
    Normal = 0,
    ProtocolError = 1,
    InternalError = 2,
}

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
