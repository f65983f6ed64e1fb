using System.Buffers.Binary;
using System.Numerics;
using System.Security.Cryptography;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// A point in the 256-bit Kademlia keyspace: sha256 of a key's bytes (for a peer, sha256 of its PeerId
/// multihash bytes), as in libp2p kad-dht. Compares as a big-endian unsigned integer; distance is XOR.
/// </summary>
public readonly struct KadId : IEquatable<KadId>, IComparable<KadId>
{
    /// <summary>Size of an id in bytes.</summary>
    public const int Length = 32;

    private readonly ulong _a, _b, _c, _d; // big-endian words, _a most significant

    private KadId(ulong a, ulong b, ulong c, ulong d) { _a = a; _b = b; _c = c; _d = d; }

    /// <summary>An id from 32 raw bytes (already hashed).</summary>
    public static KadId FromRaw(ReadOnlySpan<byte> digest)
    {
        if (digest.Length != Length)
            throw new DhtException(DhtErrorCode.InvalidMessage, $"a Kademlia id is {Length} bytes, got {digest.Length}");
        return new(BinaryPrimitives.ReadUInt64BigEndian(digest), BinaryPrimitives.ReadUInt64BigEndian(digest[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(digest[16..]), BinaryPrimitives.ReadUInt64BigEndian(digest[24..]));
    }

    /// <summary>The id of a DHT key: sha256 of its bytes.</summary>
    public static KadId FromKey(ReadOnlySpan<byte> key)
    {
        Span<byte> h = stackalloc byte[Length];
        SHA256.HashData(key, h);
        return FromRaw(h);
    }

    /// <summary>The id of a peer: sha256 of its PeerId multihash bytes.</summary>
    public static KadId FromPeer(PeerId peer) => FromKey(peer.Span);

    /// <summary>XOR distance to <paramref name="other"/>.</summary>
    public KadId Xor(KadId other) => new(_a ^ other._a, _b ^ other._b, _c ^ other._c, _d ^ other._d);

    /// <summary>Number of leading bits shared with <paramref name="other"/> (0..256).</summary>
    public int CommonPrefixLength(KadId other)
    {
        var x = Xor(other);
        if (x._a != 0) return BitOperations.LeadingZeroCount(x._a);
        if (x._b != 0) return 64 + BitOperations.LeadingZeroCount(x._b);
        if (x._c != 0) return 128 + BitOperations.LeadingZeroCount(x._c);
        if (x._d != 0) return 192 + BitOperations.LeadingZeroCount(x._d);
        return 256;
    }

    /// <summary>Compares the distances of <paramref name="x"/> and <paramref name="y"/> from this id; negative when x is closer.</summary>
    public int CompareDistance(KadId x, KadId y) => Xor(x).CompareTo(Xor(y));

    /// <summary>A random id whose common prefix with this one is exactly <paramref name="cpl"/> bits (for bucket refresh).</summary>
    public KadId RandomWithPrefix(int cpl, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(cpl);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(cpl, 255);
        Span<byte> r = stackalloc byte[Length];
        random.NextBytes(r);
        var rnd = FromRaw(r);
        Span<byte> mine = stackalloc byte[Length];
        Span<byte> rb = stackalloc byte[Length];
        WriteTo(mine);
        rnd.WriteTo(rb);
        for (var bit = 0; bit <= cpl; bit++)
        {
            var mask = (byte)(0x80 >> (bit & 7));
            var v = (byte)(mine[bit >> 3] & mask);
            if (bit == cpl) v ^= mask; // first differing bit
            rb[bit >> 3] = (byte)((rb[bit >> 3] & ~mask) | v);
        }
        return FromRaw(rb);
    }

    /// <summary>Writes the 32 bytes big-endian.</summary>
    public void WriteTo(Span<byte> dest)
    {
        BinaryPrimitives.WriteUInt64BigEndian(dest, _a);
        BinaryPrimitives.WriteUInt64BigEndian(dest[8..], _b);
        BinaryPrimitives.WriteUInt64BigEndian(dest[16..], _c);
        BinaryPrimitives.WriteUInt64BigEndian(dest[24..], _d);
    }

    public int CompareTo(KadId other)
    {
        var c = _a.CompareTo(other._a);
        if (c != 0) return c;
        c = _b.CompareTo(other._b);
        if (c != 0) return c;
        c = _c.CompareTo(other._c);
        return c != 0 ? c : _d.CompareTo(other._d);
    }

    public bool Equals(KadId other) => _a == other._a && _b == other._b && _c == other._c && _d == other._d;
    public override bool Equals(object? obj) => obj is KadId k && Equals(k);
    public override int GetHashCode() => HashCode.Combine(_a, _b, _c, _d);
    public static bool operator ==(KadId x, KadId y) => x.Equals(y);
    public static bool operator !=(KadId x, KadId y) => !x.Equals(y);

    /// <summary>Lower-case hex of the 32 bytes.</summary>
    public override string ToString()
    {
        Span<byte> b = stackalloc byte[Length];
        WriteTo(b);
        return Convert.ToHexStringLower(b);
    }
}
