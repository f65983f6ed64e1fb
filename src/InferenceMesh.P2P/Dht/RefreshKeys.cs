using System.Security.Cryptography;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// Keys whose Kademlia id has a chosen 16-bit prefix, for bucket refresh: FIND_NODE needs a key whose
/// sha256 lands in the bucket, and sha256 cannot be inverted, so a table of 65,536 keys (one per prefix,
/// each shaped as a sha2-256 PeerId multihash) is built once per process (~1 s), as go-libp2p does.
/// </summary>
internal static class RefreshKeys
{
    private static readonly Lazy<byte[][]> Table = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    public static byte[] KeyWithPrefix(KadId self, int cpl, Random random)
    {
        var target = self.RandomWithPrefix(cpl, random);
        if (cpl >= 16)
            return BruteForce(self, cpl, random);
        Span<byte> t = stackalloc byte[KadId.Length];
        target.WriteTo(t);
        return Table.Value[(t[0] << 8) | t[1]];
    }

    private static byte[] BruteForce(KadId self, int cpl, Random random)
    {
        var key = new byte[34];
        key[0] = 0x12; key[1] = 32;
        for (var i = 0; i < 1 << 24; i++)
        {
            random.NextBytes(key.AsSpan(2));
            if (self.CommonPrefixLength(KadId.FromKey(key)) == cpl)
                return key;
        }
        return key;
    }

    private static byte[][] Build()
    {
        var table = new byte[65536][];
        var filled = 0;
        Span<byte> seed = stackalloc byte[8];
        Span<byte> h = stackalloc byte[32];
        for (ulong n = 0; filled < table.Length; n++)
        {
            var key = new byte[34];
            key[0] = 0x12; key[1] = 32;
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(seed, n);
            SHA256.HashData(seed, key.AsSpan(2));
            SHA256.HashData(key, h);
            var prefix = (h[0] << 8) | h[1];
            if (table[prefix] is null)
            {
                table[prefix] = key;
                filled++;
            }
        }
        return table;
    }
}
