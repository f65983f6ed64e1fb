namespace InferenceMesh.P2P.Encoding;

/// <summary>RFC 4648 base32, lower case, no padding (multibase <c>base32</c>, prefix 'b'), as CIDs are written.</summary>
public static class Base32
{
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";

    /// <summary>Encodes bytes as lower-case unpadded base32.</summary>
    public static string Encode(ReadOnlySpan<byte> data)
    {
        var chars = new char[(data.Length * 8 + 4) / 5];
        int buffer = 0, bits = 0, o = 0;
        foreach (var b in data)
        {
            buffer = (buffer << 8) | b;
            bits += 8;
            while (bits >= 5)
            {
                chars[o++] = Alphabet[(buffer >> (bits - 5)) & 31];
                bits -= 5;
            }
        }
        if (bits > 0) chars[o++] = Alphabet[(buffer << (5 - bits)) & 31];
        return new string(chars, 0, o);
    }

    /// <summary>Decodes unpadded base32 (either case); throws <see cref="P2PException"/> on a bad character.</summary>
    public static byte[] Decode(ReadOnlySpan<char> text)
    {
        if (text.Length > 1024)
            throw new P2PException(P2PErrorCode.LimitExceeded, "base32 text longer than 1024 characters");
        var result = new byte[text.Length * 5 / 8];
        int buffer = 0, bits = 0, o = 0;
        foreach (var ch in text)
        {
            var c = char.ToLowerInvariant(ch);
            int v = c is >= 'a' and <= 'z' ? c - 'a' : c is >= '2' and <= '7' ? c - '2' + 26 : -1;
            if (v < 0) throw new P2PException(P2PErrorCode.InvalidEncoding, $"invalid base32 character '{ch}'");
            buffer = (buffer << 5) | v;
            bits += 5;
            if (bits >= 8)
            {
                result[o++] = (byte)(buffer >> (bits - 8));
                bits -= 8;
            }
        }
        return result;
    }
}
