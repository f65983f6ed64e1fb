using System.Buffers;
using System.Buffers.Binary;
using InferenceMesh.Core;

namespace InferenceMesh.P2P.Encoding;

/// <summary>
/// Minimal protobuf writer for the libp2p messages (keys, Noise payload, Identify, Kademlia). Fields are
/// written in the order called; callers write them in field-number order, which gives the deterministic
/// encoding the key specs ask for.
/// </summary>
internal sealed class ProtoWriter(int capacity = 128)
{
    private readonly ArrayBufferWriter<byte> _buffer = new(capacity);

    public int Length => _buffer.WrittenCount;

    public ReadOnlySpan<byte> WrittenSpan => _buffer.WrittenSpan;

    /// <summary>A varint field; protobuf writes negative int32/int64 values as 10-byte varints, so the full 64 bits are written.</summary>
    public void WriteVarint(int field, ulong value)
    {
        UnsignedVarint.Write(_buffer, (ulong)(field << 3));
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

    public void WriteBytes(int field, ReadOnlySpan<byte> value)
    {
        UnsignedVarint.Write(_buffer, (ulong)((field << 3) | 2));
        UnsignedVarint.Write(_buffer, (ulong)value.Length);
        _buffer.Write(value);
    }

    public void WriteString(int field, string value) => WriteBytes(field, System.Text.Encoding.UTF8.GetBytes(value));

    public void WriteFixed64(int field, ulong value)
    {
        UnsignedVarint.Write(_buffer, (ulong)((field << 3) | 1));
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer.GetSpan(8), value);
        _buffer.Advance(8);
    }

    public byte[] ToArray() => _buffer.WrittenSpan.ToArray();
}

/// <summary>
/// Minimal protobuf reader over one whole message already bounded in size by its caller. Unknown fields are
/// skipped; malformed input throws what <c>fail</c> makes of the reason (<see cref="P2PException"/>
/// InvalidEncoding by default; the DHT makes its own typed error).
/// </summary>
internal ref struct ProtoReader
{
    private readonly ReadOnlySpan<byte> _data;
    private readonly Func<string, Exception> _fail;
    private int _pos;

    public ProtoReader(ReadOnlySpan<byte> data, Func<string, Exception>? fail = null)
    {
        _data = data;
        _fail = fail ?? (why => new P2PException(P2PErrorCode.InvalidEncoding, why));
        _pos = 0;
    }

    /// <summary>Wire type of the field last read by <see cref="TryReadTag"/>.</summary>
    public int WireType { get; private set; }

    public bool TryReadTag(out int field)
    {
        if (_pos >= _data.Length) { field = 0; return false; }
        var tag = ReadVarint();
        if (tag >> 3 is 0 or > int.MaxValue >> 3)
            throw _fail("protobuf field number out of range");
        field = (int)(tag >> 3);
        WireType = (int)(tag & 7);
        return true;
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        for (var i = 0; i < 10 && _pos < _data.Length; i++)
        {
            var b = _data[_pos++];
            value |= (ulong)(b & 0x7F) << (7 * i);
            if ((b & 0x80) == 0)
                return value;
        }
        throw _fail("truncated or over-long protobuf varint");
    }

    /// <summary>The value of a field that must be a varint.</summary>
    public ulong ReadVarintField()
    {
        if (WireType != 0)
            throw _fail($"protobuf wire type {WireType} where a varint was expected");
        return ReadVarint();
    }

    /// <summary>The value of a field that must be fixed64.</summary>
    public ulong ReadFixed64Field()
    {
        if (WireType != 1)
            throw _fail($"protobuf wire type {WireType} where fixed64 was expected");
        Advance(8);
        return BinaryPrimitives.ReadUInt64LittleEndian(_data.Slice(_pos - 8, 8));
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        if (WireType != 2)
            throw _fail($"protobuf wire type {WireType} where bytes were expected");
        var len = ReadVarint();
        if (len > (ulong)(_data.Length - _pos))
            throw _fail("protobuf field length past the end of the message");
        var s = _data.Slice(_pos, (int)len);
        _pos += (int)len;
        return s;
    }

    public string ReadString()
    {
        var bytes = ReadBytes();
        try
        {
            return new System.Text.UTF8Encoding(false, true).GetString(bytes);
        }
        catch (ArgumentException)
        {
            throw _fail("protobuf string is not valid UTF-8");
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
            default: throw _fail($"unsupported protobuf wire type {WireType}");
        }
    }

    private void Advance(int n)
    {
        if (n > _data.Length - _pos)
            throw _fail("protobuf field past the end of the message");
        _pos += n;
    }
}
