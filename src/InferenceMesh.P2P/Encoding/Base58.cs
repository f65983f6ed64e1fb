namespace InferenceMesh.P2P.Encoding;

/// <summary>Base58 with the Bitcoin alphabet (multibase <c>base58btc</c>), as PeerIds are written.</summary>
public static class Base58
{
    private const string Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    private static readonly sbyte[] Index = BuildIndex();

    private static sbyte[] BuildIndex()
    {
        var index = new sbyte[128];
        Array.Fill(index, (sbyte)-1);
        for (var i = 0; i < Alphabet.Length; i++) index[Alphabet[i]] = (sbyte)i;
        return index;
    }

    /// <summary>Encodes bytes as base58btc text.</summary>
    public static string Encode(ReadOnlySpan<byte> data)
    {
        var zeros = 0;
        while (zeros < data.Length && data[zeros] == 0) zeros++;
        var size = (data.Length - zeros) * 138 / 100 + 1;
        var digits = new byte[size];
        var length = 0;
        for (var i = zeros; i < data.Length; i++)
        {
            int carry = data[i];
            var j = 0;
            for (var k = size - 1; (carry != 0 || j < length) && k >= 0; k--, j++)
            {
                carry += 256 * digits[k];
                digits[k] = (byte)(carry % 58);
                carry /= 58;
            }
            length = j;
        }
        var start = size - length;
        while (start < size && digits[start] == 0) start++;
        var chars = new char[zeros + size - start];
        for (var i = 0; i < zeros; i++) chars[i] = '1';
        for (var i = start; i < size; i++) chars[zeros + i - start] = Alphabet[digits[i]];
        return new string(chars);
    }

    /// <summary>Decodes base58btc text; throws <see cref="P2PException"/> on a character outside the alphabet.</summary>
    public static byte[] Decode(ReadOnlySpan<char> text)
    {
        if (text.Length > 1024)
            throw new P2PException(P2PErrorCode.LimitExceeded, "base58 text longer than 1024 characters");
        var zeros = 0;
        while (zeros < text.Length && text[zeros] == '1') zeros++;
        var size = (text.Length - zeros) * 733 / 1000 + 1;
        var bytes = new byte[size];
        var length = 0;
        for (var i = zeros; i < text.Length; i++)
        {
            var c = text[i];
            var digit = c < 128 ? Index[c] : -1;
            if (digit < 0)
                throw new P2PException(P2PErrorCode.InvalidEncoding, $"invalid base58 character '{c}'");
            int carry = digit;
            var j = 0;
            for (var k = size - 1; (carry != 0 || j < length) && k >= 0; k--, j++)
            {
                carry += 58 * bytes[k];
                bytes[k] = (byte)(carry & 0xFF);
                carry >>= 8;
            }
            length = j;
        }
        var start = size - length;
        while (start < size && bytes[start] == 0) start++;
        var result = new byte[zeros + size - start];
        Array.Copy(bytes, start, result, zeros, size - start);
        return result;
    }
}
