using System.Buffers;
using InferenceMesh.P2P.Encoding;

namespace InferenceMesh.P2P.Dht;

/// <summary>Protobuf writer for the DHT messages: fields in the order called (callers use field-number order).</summary>
internal sealed class KadProtoWriter
{
    private readonly ArrayBufferWriter<byte> _buffer;

    public KadProtoWriter(int capacity = 256) => _buffer = new(capacity);

    public int Length => _buffer.WrittenCount;

    public void WriteVarint(int field, ulong value)
    {
        Varint.Write(_buffer, (ulong)(field << 3));
        WriteRawVarint(value);
    }

    public void WriteBytes(int field, ReadOnlySpan<byte> value)
    {
        Varint.Write(_buffer, (ulong)((field << 3) | 2));
        Varint.Write(_buffer, (ulong)value.Length);
        _buffer.Write(value);
    }

    public void WriteString(int field, string value) => WriteBytes(field, System.Text.Encoding.UTF8.GetBytes(value));

    public void WriteFixed64(int field, ulong value)
    {
        Varint.Write(_buffer, (ulong)((field << 3) | 1));
        var span = _buffer.GetSpan(8);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(span, value);
        _buffer.Advance(8);
    }

    public ReadOnlySpan<byte> WrittenSpan => _buffer.WrittenSpan;

    public byte[] ToArray() => _buffer.WrittenSpan.ToArray();

    // protobuf int32/int64 negatives are 10-byte varints; the multiformats Varint caps at 2^63-1, so write here.
    private void WriteRawVarint(ulong value)
    {
        var span = _buffer.GetSpan(10);
        var i = 0;
        while (value >= 0x80)
        {
            span[i++] = (byte)(value | 0x80);
            value >>= 7;
        }
        span[i++] = (byte)value;
        _buffer.Advance(i);
    }
}

/// <summary>
/// Protobuf reader over one whole message already bounded in size. Unknown fields are skipped;
/// malformed input throws <see cref="DhtException"/> (InvalidMessage).
/// </summary>
internal ref struct KadProtoReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _pos;

    public KadProtoReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _pos = 0;
    }

    public int WireType { get; private set; }

    public bool TryReadTag(out int field)
    {
        if (_pos >= _data.Length) { field = 0; return false; }
        var tag = ReadVarint();
        if (tag >> 3 is 0 or > (1u << 29) - 1)
            throw new DhtException(DhtErrorCode.InvalidMessage, "protobuf field number out of range");
        field = (int)(tag >> 3);
        WireType = (int)(tag & 7);
        return true;
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        for (var i = 0; i < 10; i++)
        {
            if (_pos >= _data.Length)
                break;
            var b = _data[_pos++];
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
                return value;
        }
        throw new DhtException(DhtErrorCode.InvalidMessage, "truncated or over-long protobuf varint");
    }

    public ulong ReadVarintField()
    {
        if (WireType != 0)
            throw new DhtException(DhtErrorCode.InvalidMessage, $"protobuf wire type {WireType} where a varint was expected");
        return ReadVarint();
    }

    public ulong ReadFixed64Field()
    {
        if (WireType != 1)
            throw new DhtException(DhtErrorCode.InvalidMessage, $"protobuf wire type {WireType} where fixed64 was expected");
        Advance(8);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(_data.Slice(_pos - 8, 8));
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        if (WireType != 2)
            throw new DhtException(DhtErrorCode.InvalidMessage, $"protobuf wire type {WireType} where bytes were expected");
        var len = ReadVarint();
        if (len > (ulong)(_data.Length - _pos))
            throw new DhtException(DhtErrorCode.InvalidMessage, "protobuf field length past the end of the message");
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
            throw new DhtException(DhtErrorCode.InvalidMessage, "protobuf string is not valid UTF-8", e);
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
            default: throw new DhtException(DhtErrorCode.InvalidMessage, $"unsupported protobuf wire type {WireType}");
        }
    }

    private void Advance(int n)
    {
        if (n > _data.Length - _pos)
            throw new DhtException(DhtErrorCode.InvalidMessage, "protobuf field past the end of the message");
        _pos += n;
    }
}
