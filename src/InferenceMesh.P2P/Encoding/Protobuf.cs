using System.Buffers;

namespace InferenceMesh.P2P.Encoding;

/// <summary>
/// Minimal protobuf writer for the handful of libp2p messages (keys, Noise payload, Identify).
/// Fields are written in the order called; callers write them in field-number order, which
/// gives the deterministic encoding the key specs ask for.
/// </summary>
internal sealed class ProtoWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(128);

    public void WriteVarint(int field, ulong value)
    {
        Varint.Write(_buffer, (ulong)(field << 3));
        Varint.Write(_buffer, value);
    }

    public void WriteBytes(int field, ReadOnlySpan<byte> value)
    {
        Varint.Write(_buffer, (ulong)((field << 3) | 2));
        Varint.Write(_buffer, (ulong)value.Length);
        _buffer.Write(value);
    }

    public void WriteString(int field, string value) => WriteBytes(field, System.Text.Encoding.UTF8.GetBytes(value));

    public byte[] ToArray() => _buffer.WrittenSpan.ToArray();
}

/// <summary>
/// Minimal protobuf reader over one whole message already bounded in size by its caller.
/// Unknown fields are skipped; malformed input throws <see cref="P2PException"/> (InvalidEncoding).
/// </summary>
internal ref struct ProtoReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _pos;

    public ProtoReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _pos = 0;
    }

    /// <summary>Wire type of the field last read by <see cref="TryReadTag"/>.</summary>
    public int WireType { get; private set; }

    public bool TryReadTag(out int field)
    {
        if (_pos >= _data.Length) { field = 0; return false; }
        var tag = ReadVarint();
        if (tag >> 3 is 0 or > int.MaxValue >> 3)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "protobuf field number out of range");
        field = (int)(tag >> 3);
        WireType = (int)(tag & 7);
        return true;
    }

    public ulong ReadVarint()
    {
        var v = Varint.TryReadProto(_data[_pos..], out var len);
        _pos += len;
        return v;
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        if (WireType != 2)
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"protobuf wire type {WireType} where bytes expected");
        var len = ReadVarint();
        if (len > (ulong)(_data.Length - _pos))
            throw new P2PException(P2PErrorCode.InvalidEncoding, "protobuf field length past end of message");
        var s = _data.Slice(_pos, (int)len);
        _pos += (int)len;
        return s;
    }

    public string ReadString()
    {
        try
        {
            return new System.Text.UTF8Encoding(false, true).GetString(ReadBytes());
        }
        catch (ArgumentException e)
        {
            throw new P2PException(P2PErrorCode.InvalidEncoding, "protobuf string is not valid UTF-8", e);
        }
    }

    public void Skip()
    {
        switch (WireType)
        {
            case 0: ReadVarint(); break;
            case 1: Advance(8); break;
            case 2: ReadBytes(); break;
            case 5: Advance(4); break;
            default: throw new P2PException(P2PErrorCode.InvalidEncoding, $"unsupported protobuf wire type {WireType}");
        }
    }

    private void Advance(int n)
    {
        if (n > _data.Length - _pos)
            throw new P2PException(P2PErrorCode.InvalidEncoding, "protobuf field past end of message");
        _pos += n;
    }
}
