using InferenceMesh.P2P.Encoding;
using InferenceMesh.P2P.Identity;

namespace InferenceMesh.P2P.Dht;

/// <summary>
/// The wire form shared by merging record namespaces whose value is a list of entries each signed by its author
/// (span announcements, fraud reports): an entry is <c>{1: body, 2: Ed25519 signature over prefix ‖ body}</c>, a value
/// is repeated field 1 of entries.
/// </summary>
internal static class SignedEntries
{
    /// <summary>An entry holding <paramref name="body"/> signed by <paramref name="identity"/> under <paramref name="prefix"/>.</summary>
    public static byte[] Sign(byte[] body, ReadOnlySpan<byte> prefix, Ed25519KeyPair identity)
    {
        var w = new ProtoWriter();
        w.WriteBytes(1, body);
        w.WriteBytes(2, identity.Sign([.. prefix, .. body]));
        return w.ToArray();
    }

    /// <summary>A record value holding the given signed entries.</summary>
    public static byte[] EncodeValue(IEnumerable<byte[]> signedEntries)
    {
        var w = new ProtoWriter();
        foreach (var e in signedEntries) w.WriteBytes(1, e);
        return w.ToArray();
    }

    /// <summary>The entries of a value, at most <paramref name="maxEntries"/>; throws <see cref="DhtException"/> (InvalidRecord) past that.</summary>
    public static List<byte[]> Split(ReadOnlySpan<byte> value, int maxEntries, string what)
    {
        var entries = new List<byte[]>();
        var r = new ProtoReader(value, DhtException.InvalidMessage);
        while (r.TryReadTag(out var field))
        {
            if (field != 1) { r.Skip(); continue; }
            var signed = r.ReadBytes();
            if (entries.Count >= maxEntries)
                throw new DhtException(DhtErrorCode.InvalidRecord, $"{what} record holds more than {maxEntries} entries");
            entries.Add(signed.ToArray());
        }
        return entries;
    }

    /// <summary>
    /// The body of <paramref name="signed"/> when its signature under <paramref name="prefix"/> verifies with the key of the
    /// author that <paramref name="decode"/> reads from the body; null when it is malformed (<paramref name="malformed"/> set)
    /// or badly signed.
    /// </summary>
    public static T? Open<T>(ReadOnlySpan<byte> signed, ReadOnlySpan<byte> prefix, Func<byte[], T> decode, Func<T, PeerId> author, out bool malformed) where T : class
    {
        malformed = false;
        byte[] body = [], signature = [];
        T entry;
        try
        {
            var r = new ProtoReader(signed, DhtException.InvalidMessage);
            while (r.TryReadTag(out var f))
            {
                if (f == 1) body = r.ReadBytes().ToArray();
                else if (f == 2) signature = r.ReadBytes().ToArray();
                else r.Skip();
            }
            entry = decode(body);
        }
        catch (DhtException)
        {
            malformed = true;
            return null;
        }
        var key = author(entry).TryGetEd25519PublicKey();
        return key is not null && Libp2pKeys.VerifyEd25519(key, [.. prefix, .. body], signature) ? entry : null;
    }
}
