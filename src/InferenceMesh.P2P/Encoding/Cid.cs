using InferenceMesh.Core;

namespace InferenceMesh.P2P.Encoding;

/// <summary>Content identifiers as the DHT keys them: the multihash inside a CIDv0 (<c>Qm…</c>) or a base32 CIDv1 (<c>b…</c>).</summary>
public static class Cid
{
    /// <summary>The multihash of <paramref name="text"/>; throws <see cref="P2PException"/> (InvalidEncoding) for anything else.</summary>
    public static byte[] Multihash(string text)
    {
        try
        {
            if (text.StartsWith("Qm", StringComparison.Ordinal) && text.Length == 46)
                return Base58.Decode(text);
            if (text.StartsWith('b'))
            {
                // CIDv1: version varint, codec varint, then the multihash.
                var bytes = Base32.Decode(text.AsSpan(1));
                if (UnsignedVarint.TryDecode(bytes, out var version, out var versionLength)
                    && UnsignedVarint.TryDecode(bytes.AsSpan(versionLength), out _, out var codecLength)
                    && version == 1 && bytes.Length > versionLength + codecLength)
                    return bytes[(versionLength + codecLength)..];
            }
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException or P2PException)
        {
            throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not a CID: {e.Message}");
        }
        throw new P2PException(P2PErrorCode.InvalidEncoding, $"'{text}' is not a CIDv0 (Qm…) or base32 CIDv1 (b…)");
    }
}
